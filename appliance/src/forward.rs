//! # Forwarding workers: the IPv4 router and the L2 cross-connect
//!
//! What it is: the forwarding roles of the appliance on AF_XDP. [`ForwardService`] takes a
//! set of interfaces whole (the steering program redirects every frame, `steer_all`) and runs
//! one [`ForwardWorker`] per queue index: worker `k` owns an [`XskGroup`] of the sockets of
//! queue `k` of **every** interface, sharing one UMEM, so a frame received on one interface is
//! transmitted from the same memory on another (zero copy in userspace; on copy-mode devices
//! such as veth the kernel still copies into and out of the UMEM).
//!
//! Roles ([`Role`]):
//! - **router**: a libos [`Router`] per worker (one stack per interface: ARP, ping and ICMP
//!   errors from the appliance's addresses) over one [`Fib`] shared read-only by all workers;
//!   static neighbours go into the stacks' caches, everything else is resolved by ARP;
//! - **xconnect**: port pairs; every frame received on one side leaves unchanged on the other
//!   (the same UMEM frame), counted per pair and direction.
//!
//! One iteration of a worker ([`ForwardWorker::run_loop`]): one `rx_burst` per port; if
//! anything arrived or waits to be sent, one clock read; the router's `handle_rx` per burst
//! (or the pair's peer for a cross-connect) and each frame's action (send from the same frame
//! on the egress port's TX burst, or free); timers; neighbour hints to and from the sibling
//! workers; the stacks' own frames (`poll_tx`) into frames allocated on the port that sends
//! them; one `tx_burst` per port with something to send. An empty poll costs the `rx_burst`s
//! only; every [`CHECK_EVERY`] empty polls the clock, the timers, a new table and the idle
//! logic are visited; after [`ForwardWorkerConfig::spin`] of empty polls the worker sleeps on
//! its sockets (`poll(2)`), never past a stack timer.
//!
//! Control messages (DESIGN §2): a new table reaches every worker through a bounded channel
//! ([`ForwardService::set_fib`]) and is swapped in between batches; the worker hands the old
//! one back so it is freed on the control thread, not on the fast path.
//!
//! Multi-queue (DESIGN §3): worker `k` polls queue `k` of every interface and transmits on
//! queue `k`. veth has no RSS: a frame arrives on the peer's queue with the index of the
//! sender's transmit queue, which the kernel picks per socket (a random hash for TCP), so
//! the two directions of a flow may land on different workers. Stateless forwarding does not
//! care; the per-interface stacks share what ARP teaches them ([`HintLinks`]), so a reply that
//! lands on another worker still finishes the resolution. docs/forwarding.md has the details.
//!
//! What it never does on the fast path: allocate (bursts and the action array are fixed),
//! lock, log, or make a system call per packet (one `rx_burst` per port per iteration, at most
//! one `tx_burst` kick per port, one clock read per busy iteration); counters are published
//! with relaxed stores every few busy iterations (metrics add a second clock read per busy
//! iteration).
//!
//! Metrics ([`crate::metrics`]): each worker writes a [`WorkerMetrics`] block (role `router`
//! or `xconnect`; one port per interface at the worker's queue index; one stack per interface
//! for the router) as the echo worker does: batch sizes per port, busy time per busy batch and
//! its duration in the histogram of every port the batch received from or sent on (a bit mask
//! kept during the batch), snapshots of the ports', stacks' and router's counters every few
//! batches; [`ForwardService::metrics`] adds every socket's `XDP_STATISTICS` and every steering
//! program's verdicts, read at scrape time. [`ForwardWorkerConfig::metrics`] turns it off.
//!
//! Capture ([`crate::capture`]): each worker has one capture slot; every port of its group is
//! a capture point ([`ForwardService::captures`]: interface, the worker's queue, the port as
//! `sub`). A received burst costs one relaxed load and one branch while no capture runs; the
//! frames are taken as received, before the router rewrites them.
//!
//! Fast path (issue 9, [`crate::fastpath`]): with [`ForwardConfig::fast_path`] `xdp` (or `auto`
//! on a device without zero-copy AF_XDP) the router's interfaces get the forwarding XDP
//! program instead of the steering program: it forwards what the table and the neighbours it
//! mirrors know and punts the rest to these sockets, where the router handles it as in
//! userspace mode. [`ForwardService::set_fib`] loads a new table into it before the workers get
//! it; worker 0 mirrors its stacks' usable neighbours into it ([`NeighborMirror`]).
//!
//! Shutdown: [`ForwardService::join`] stops the steering (the kernel stops writing into the
//! sockets), then the workers: each frees what it holds, drains, waits (bounded) for its
//! transmissions and checks the frame accounting of its whole UMEM on a quiet group; the
//! programs are detached when dropped (BPF links), on every path.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use libos::fib::{Fib, FibBuilder, NextHop};
use libos::forward::{interface_routes, Action, ForwardStats, Router, RouterConfig};
use libos::iface::route::Ipv4Cidr;
use libos::wire::{EthernetAddress, NetHdr};
use libos::{Instant, NeighborHint, RxBatch, StackConfig, Stats};
use nic::afxdp::{GroupPort, XdpMode, XdpProgram, XdpStatistics, XskConfig, XskGroup};
use nic::{Burst, Desc, FrameCounts, Port, PortStats, MAX_BURST};

use crate::fastpath::{FastPathCtl, FastPathMode, FpPort, NeighborMirror, PortWatch};
use nic::afxdp::{FastPathCounters, FastPathReader};

use crate::capture::{CaptureSlot, CaptureTarget};
use crate::metrics::live::{port_bit, SLOW_EVERY};
use crate::metrics::{Forwarding, ServiceMetrics, SocketReader, WorkerMetrics};
use crate::worker::{Clock, PortSlots};

/// Empty polls between two visits of the clock, timers and idle logic.
pub const CHECK_EVERY: u32 = 64;
/// Busy iterations between two publications of the counters (and looks for a new table).
const PUBLISH_EVERY: u32 = 8;
/// Neighbour hints one inbox holds.
const HINT_QUEUE: usize = 64;

/// One interface of a forwarding service.
#[derive(Debug, Clone)]
pub struct IfaceSpec {
    /// Device name (in the calling thread's namespace).
    pub name: String,
    /// The appliance's addresses on it (router; the first is its primary address).
    pub addrs: Vec<Ipv4Cidr>,
    /// IP MTU.
    pub mtu: usize,
}

/// A static route of the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination prefix.
    pub prefix: Ipv4Cidr,
    /// Where it goes.
    pub next_hop: NextHop,
}

/// What the workers do.
#[derive(Debug, Clone)]
pub enum Role {
    /// IPv4 router.
    Router {
        /// Static routes (beside the interfaces' own: connected prefixes, addresses).
        routes: Vec<RouteSpec>,
        /// Static neighbours: (interface index, address, MAC).
        neighbors: Vec<(usize, Ipv4Addr, [u8; 6])>,
        /// A table built beforehand (it must hold the interfaces' routes, see
        /// [`build_fib`]); when set, `routes` is not used.
        fib: Option<Arc<Fib>>,
        /// Open a TCP listener on this port on every stack, accepting and closing connections
        /// (a readiness probe for `xdpos bench ready`, not a service).
        tcp_listen: Option<u16>,
    },
    /// L2 cross-connect of interface pairs (indices into the interfaces).
    Xconnect {
        /// The pairs.
        pairs: Vec<(usize, usize)>,
    },
}

/// How a forwarding worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardWorkerConfig {
    /// Frames per TX burst and backlog kept per port when a ring is full.
    pub burst: usize,
    /// How long the worker polls empty ports before it sleeps on them.
    pub spin: Duration,
    /// Longest sleep when idle (bounds how late a stop or a new table is seen).
    pub idle_wait: Duration,
    /// Update the worker's metrics block (see [`crate::worker::WorkerConfig::metrics`]).
    pub metrics: bool,
    /// Drop every capability of the worker's thread before it runs (the daemon: nothing a
    /// worker does once its sockets are open needs one; see `daemon::caps`).
    pub drop_capabilities: bool,
}

impl Default for ForwardWorkerConfig {
    fn default() -> Self {
        ForwardWorkerConfig {
            burst: nic::DEFAULT_BURST,
            spin: Duration::from_millis(1),
            idle_wait: Duration::from_millis(50),
            metrics: true,
            drop_capabilities: false,
        }
    }
}

/// Everything a forwarding service needs.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// Interfaces, in port order.
    pub ifaces: Vec<IfaceSpec>,
    /// Router or cross-connect.
    pub role: Role,
    /// Queues per interface: one worker per queue index.
    pub queues: u32,
    /// CPUs to pin the workers to, in turn (empty: no pinning).
    pub cpus: Vec<usize>,
    /// XDP attach mode.
    pub mode: XdpMode,
    /// Socket settings (frames, frame size, ring size, burst, bind mode) of every socket; the
    /// UMEM of a worker (`frames`) is shared by its sockets.
    pub socket: XskConfig,
    /// Worker loop settings.
    pub worker: ForwardWorkerConfig,
    /// Router: where packets with a known route and next hop are forwarded (the cross-connect
    /// ignores it).
    pub fast_path: FastPathMode,
}

/// The stack configurations of a router's interfaces (MACs read from the devices).
fn stack_configs(cfg: &ForwardConfig, macs: &[[u8; 6]]) -> Vec<StackConfig> {
    cfg.ifaces
        .iter()
        .zip(macs)
        .map(|(i, mac)| {
            let mut sc = StackConfig::new(EthernetAddress(*mac), &i.addrs);
            sc.mtu = i.mtu;
            sc
        })
        .collect()
}

/// The router's table: the interfaces' own routes (see [`interface_routes`]) and `routes`.
pub fn build_fib(ifaces: &[IfaceSpec], routes: &[RouteSpec]) -> Arc<Fib> {
    Arc::new(fib_builder(ifaces, routes).build())
}

/// The route set of [`build_fib`], to add more before building.
pub fn fib_builder(ifaces: &[IfaceSpec], routes: &[RouteSpec]) -> FibBuilder {
    let cfgs: Vec<StackConfig> = ifaces
        .iter()
        .map(|i| StackConfig::new(EthernetAddress([2, 0, 0, 0, 0, 1]), &i.addrs))
        .collect();
    let mut b = interface_routes(&cfgs);
    for r in routes {
        b.insert(r.prefix, r.next_hop);
    }
    b
}

/// The interface a gateway is reached through: the one whose connected prefix holds it.
pub fn egress_for(ifaces: &[IfaceSpec], gw: Ipv4Addr) -> Option<usize> {
    ifaces.iter().position(|i| i.addrs.iter().any(|a| a.contains(gw)))
}

// ---------------------------------------------------------------------------------------------
// Neighbour hints between the workers of one interface.

/// The hint channels of one worker: per port, an inbox and the senders to the other workers'
/// inboxes of the same port (bounded; a full inbox drops the hint, the sibling then resolves
/// by itself).
#[derive(Debug)]
pub struct HintLinks {
    inbox: Vec<Receiver<NeighborHint>>,
    peers: Vec<Vec<SyncSender<NeighborHint>>>,
    dropped: u64,
}

/// Links `workers` workers of `ports` ports each.
pub fn hint_links(workers: usize, ports: usize) -> Vec<HintLinks> {
    let mut links: Vec<HintLinks> = (0..workers)
        .map(|_| HintLinks { inbox: Vec::new(), peers: vec![Vec::new(); ports], dropped: 0 })
        .collect();
    for p in 0..ports {
        let (txs, rxs): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| std::sync::mpsc::sync_channel(HINT_QUEUE)).unzip();
        for (w, rx) in rxs.into_iter().enumerate() {
            links[w].inbox.push(rx);
            links[w].peers[p] =
                txs.iter().enumerate().filter(|&(j, _)| j != w).map(|(_, t)| t.clone()).collect();
        }
    }
    links
}

// ---------------------------------------------------------------------------------------------
// The worker.

/// What one forwarding worker polls: queue `k` of every interface, in port order, over one frame
/// memory, so a frame received on one port leaves from the same memory on another:
/// [`XskGroup`] (AF_XDP sockets sharing a UMEM) or, with the `dpdk` feature,
/// `nic::dpdk::DpdkGroup` (DPDK queues receiving into one mempool, see [`crate::dpdk`]).
pub trait FwdGroup {
    /// The port view of one member.
    type Port<'a>: Port
    where
        Self: 'a;
    /// Members (interfaces).
    fn len(&self) -> usize;
    /// Whether the group has no member.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The port view of member `i`.
    fn port(&mut self, i: usize) -> Self::Port<'_>;
    /// Counters of member `i`.
    fn stats(&self, i: usize) -> PortStats;
    /// Where the frames of the shared memory are.
    fn frame_counts(&self) -> FrameCounts;
    /// Checks the frame accounting as deeply as the backend can.
    fn audit(&self) -> Result<FrameCounts, nic::NicError>;
    /// Sleeps until a member may have frames, at most `timeout_ms`.
    fn wait_rx(&mut self, timeout_ms: i32) -> Result<bool, nic::NicError>;
    /// The kernel's counters of member `i`'s socket (AF_XDP; zeros elsewhere).
    fn xdp_statistics(&self, i: usize) -> Result<XdpStatistics, nic::NicError>;
}

impl FwdGroup for XskGroup {
    type Port<'a> = GroupPort<'a>;
    fn len(&self) -> usize {
        XskGroup::len(self)
    }
    #[inline]
    fn port(&mut self, i: usize) -> GroupPort<'_> {
        XskGroup::port(self, i)
    }
    fn stats(&self, i: usize) -> PortStats {
        XskGroup::stats(self, i)
    }
    fn frame_counts(&self) -> FrameCounts {
        XskGroup::frame_counts(self)
    }
    fn audit(&self) -> Result<FrameCounts, nic::NicError> {
        XskGroup::audit(self)
    }
    fn wait_rx(&mut self, timeout_ms: i32) -> Result<bool, nic::NicError> {
        XskGroup::wait_rx(self, timeout_ms)
    }
    fn xdp_statistics(&self, i: usize) -> Result<XdpStatistics, nic::NicError> {
        XskGroup::xdp_statistics(self, i)
    }
}

/// [`RxBatch`] over a received burst of one group port: frame `i` is the UMEM bytes of
/// descriptor `i` (zero copy). The router records its actions separately.
struct GroupBatch<'p, P: Port> {
    port: &'p mut P,
    descs: &'p [Desc],
}

impl<P: Port> RxBatch for GroupBatch<'_, P> {
    #[inline]
    fn len(&self) -> usize {
        self.descs.len()
    }

    #[inline]
    fn frame(&mut self, i: usize) -> (&mut [u8], NetHdr) {
        match self.descs.get(i) {
            Some(d) => (self.port.frame_mut(d), d.hdr),
            None => (&mut [], NetHdr::NONE),
        }
    }

    fn set_verdict(&mut self, _: usize, _: libos::Verdict) {}
}

/// Frames of one cross-connected pair, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairStats {
    /// Interfaces (a, b).
    pub ports: (usize, usize),
    /// Frames received on a and queued on b.
    pub a_to_b: u64,
    /// Frames received on b and queued on a.
    pub b_to_a: u64,
}

/// Code that runs beside one router stack between batches (the daemon's services on the
/// router's addresses): one per port of a router worker, polled with that port's stack.
pub type PortApp = Box<dyn crate::worker::App + Send>;

enum Mode {
    Router {
        router: Box<Router>,
        listener: Option<Vec<libos::tcp::ListenHandle>>,
        accepted: u64,
        /// Per port (or none).
        apps: Vec<PortApp>,
    },
    Xconnect {
        peer: Vec<Option<usize>>,
        pairs: Vec<PairStats>,
    },
}

impl core::fmt::Debug for Mode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Mode::Router { .. } => f.write_str("Router"),
            Mode::Xconnect { pairs, .. } => {
                f.debug_struct("Xconnect").field("pairs", pairs).finish()
            }
        }
    }
}

/// Live counters of one forwarding worker (single writer, relaxed stores).
#[derive(Debug, Default)]
pub struct ForwardCounters {
    /// Frames received, all ports.
    pub rx: AtomicU64,
    /// Frames queued for transmit, all ports.
    pub tx: AtomicU64,
    /// Packets forwarded (router) or frames cross-connected.
    pub forwarded: AtomicU64,
    /// Frames handed to the local stacks.
    pub local: AtomicU64,
    /// Drops: the router's, the stacks', and for want of TX room.
    pub dropped: AtomicU64,
    /// TCP connections accepted by the readiness listener.
    pub accepted: AtomicU64,
    /// Tables swapped in.
    pub fib_swaps: AtomicU64,
}

/// What a worker did, when it stops.
#[derive(Debug, Clone)]
pub struct ForwardReport {
    /// Queue index served.
    pub queue: u32,
    /// CPU pinned to, if any.
    pub cpu: Option<usize>,
    /// Per port: counters.
    pub ports: Vec<PortStats>,
    /// Per port: the kernel's socket counters.
    pub xdp: Vec<XdpStatistics>,
    /// The router's counters (router role).
    pub forward: Option<ForwardStats>,
    /// Per port: the stack's counters (router role).
    pub stacks: Vec<Stats>,
    /// Per pair (cross-connect role).
    pub pairs: Vec<PairStats>,
    /// Frame accounting of the worker's UMEM after the drain.
    pub frames: Result<FrameCounts, String>,
    /// Frames freed because a TX ring stayed full beyond one burst of backlog.
    pub tx_full_drops: u64,
    /// Frames that arrived after the stop and were freed unprocessed.
    pub drained: u64,
    /// Loop iterations.
    pub iterations: u64,
    /// Sleeps while idle.
    pub sleeps: u64,
    /// Neighbour hints lost to a full sibling inbox.
    pub hints_dropped: u64,
    /// Tables swapped in.
    pub fib_swaps: u64,
    /// TCP connections the readiness listener accepted.
    pub accepted: u64,
}

impl ForwardReport {
    /// Every drop: the router's, the stacks', TX room, the drain.
    pub fn dropped(&self) -> u64 {
        self.forward.as_ref().map_or(0, |f| f.total_drops())
            + self.stacks.iter().map(|s| s.total_drops()).sum::<u64>()
            + self.tx_full_drops
            + self.drained
    }

    /// Packets forwarded (router) or frames cross-connected.
    pub fn forwarded(&self) -> u64 {
        match &self.forward {
            Some(f) => f.forwarded,
            None => self.pairs.iter().map(|p| p.a_to_b + p.b_to_a).sum(),
        }
    }

    /// The counters of port `i` (named `name`): what the socket moved and what the kernel
    /// dropped on its way in (a full RX ring, an empty fill ring).
    pub fn port_line(&self, i: usize, name: &str) -> String {
        let (p, x) = (self.ports.get(i).copied().unwrap_or_default(), self.xdp.get(i).copied());
        let x = x.unwrap_or_default();
        format!(
            "{name} queue {}: rx {} tx {} kicks {} tx-ring-full {} fill-starved {}; kernel: \
             rx-dropped {} rx-ring-full {} fill-ring-empty {}",
            self.queue,
            p.rx_packets,
            p.tx_packets,
            p.kicks,
            p.tx_ring_full,
            p.fill_starved,
            x.rx_dropped,
            x.rx_ring_full,
            x.rx_fill_ring_empty_descs
        )
    }

    /// The line `xdpos forward` prints per worker at exit (tests parse its first fields).
    pub fn line(&self) -> String {
        let frames = match &self.frames {
            Ok(c) => format!("ok ({} total)", c.total),
            Err(e) => e.clone(),
        };
        let rx: u64 = self.ports.iter().map(|p| p.rx_packets).sum();
        let tx: u64 = self.ports.iter().map(|p| p.tx_packets).sum();
        let mut s = format!(
            "worker {}: rx {rx} tx {tx} forwarded {} dropped {} frames {frames}",
            self.queue,
            self.forwarded(),
            self.dropped()
        );
        if let Some(f) = &self.forward {
            let reasons: Vec<String> = libos::forward::FwdDrop::ALL
                .iter()
                .filter(|&&r| f.drops(r) > 0)
                .map(|&r| format!("{r}={}", f.drops(r)))
                .collect();
            let icmp: u64 = self.stacks.iter().map(|s| s.icmp_errors_sent).sum();
            let arp: u64 = self.stacks.iter().map(|s| s.arp_requests_sent).sum();
            s.push_str(&format!(
                "; local {} arp-queued {} arp requests {arp} icmp errors {icmp} accepted {}; \
                 drops [{}]",
                f.local,
                f.arp_queued,
                self.accepted,
                reasons.join(" ")
            ));
        }
        for p in &self.pairs {
            s.push_str(&format!(
                "; pair {}-{}: a->b {} b->a {}",
                p.ports.0, p.ports.1, p.a_to_b, p.b_to_a
            ));
        }
        s
    }
}

/// The table channel of one worker: new tables in, old ones back.
#[derive(Debug)]
pub struct FibLink {
    new: Receiver<Arc<Fib>>,
    retired: SyncSender<Arc<Fib>>,
}

/// One forwarding worker (see the module documentation).
#[derive(Debug)]
pub struct ForwardWorker<G: FwdGroup = XskGroup> {
    group: G,
    mode: Mode,
    queue: u32,
    cfg: ForwardWorkerConfig,
    clock: Clock,
    hints: Option<HintLinks>,
    fib_link: Option<FibLink>,
    rx: Burst,
    /// Per port: frames to send (forwarded, replies, originated; after a full ring, the
    /// backlog, which goes first next time).
    tx: Vec<Burst>,
    /// Per port: frames allocated for the stack's `poll_tx` and not used yet.
    spare: Vec<Burst>,
    actions: [Action; MAX_BURST],
    counters: Arc<ForwardCounters>,
    metrics: Arc<WorkerMetrics>,
    /// Ports the current batch received from or sent on ([`port_bit`]), for the per-queue
    /// batch time.
    touched: u64,
    /// Packet capture (`xdpos capture`): one load and one branch per received burst when off;
    /// its `sub` is the port.
    capture: Arc<CaptureSlot>,
    publications: u32,
    iterations: u64,
    sleeps: u64,
    tx_full_drops: u64,
    fib_swaps: u64,
    idle_since: Option<std::time::Instant>,
    /// Worker 0 of a router with the XDP fast path: its neighbours into the fast path's map.
    mirror: Option<NeighborMirror>,
    /// Worker 0 of a router with the XDP fast path: whether each port accepts XDP redirects.
    watch: Option<PortWatch>,
}

impl<G: FwdGroup> ForwardWorker<G> {
    fn new(group: G, mode: Mode, queue: u32, cfg: ForwardWorkerConfig, clock: Clock) -> Self {
        let n = group.len();
        ForwardWorker {
            group,
            mode,
            queue,
            cfg: ForwardWorkerConfig { burst: cfg.burst.clamp(1, MAX_BURST), ..cfg },
            clock,
            hints: None,
            fib_link: None,
            rx: Burst::new(),
            tx: vec![Burst::new(); n],
            spare: vec![Burst::new(); n],
            actions: [Action::Free; MAX_BURST],
            counters: Default::default(),
            metrics: WorkerMetrics::single("forward"),
            touched: 0,
            capture: Arc::default(),
            publications: 0,
            iterations: 0,
            sleeps: 0,
            tx_full_drops: 0,
            fib_swaps: 0,
            idle_since: None,
            mirror: None,
            watch: None,
        }
    }

    /// The live counters.
    pub fn counters(&self) -> &Arc<ForwardCounters> {
        &self.counters
    }

    /// The metrics block.
    pub fn metrics(&self) -> &Arc<WorkerMetrics> {
        &self.metrics
    }

    /// The capture points of this worker's sockets: port `p` is queue `queue` of `ifaces[p]`.
    fn capture_targets(&self, ifaces: &[IfaceSpec]) -> Vec<CaptureTarget> {
        let epoch = self.clock.wall_epoch();
        ifaces
            .iter()
            .enumerate()
            .map(|(p, i)| CaptureTarget {
                interface: i.name.clone(),
                queue: self.queue,
                slot: self.capture.clone(),
                sub: p,
                epoch,
            })
            .collect()
    }

    fn wants_tx(&mut self) -> bool {
        if self.tx.iter().any(|b| !b.is_empty()) {
            return true;
        }
        match &mut self.mode {
            Mode::Router { router, .. } => (0..router.ports()).any(|p| router.wants_tx(p)),
            Mode::Xconnect { .. } => false,
        }
    }

    /// Receives one burst on every port and applies the actions. Returns frames received.
    #[inline]
    fn receive(&mut self, now: &mut Option<Instant>) -> usize {
        let mut total = 0;
        for p in 0..self.group.len() {
            let n = self.group.port(p).rx_burst(&mut self.rx);
            if n == 0 {
                continue;
            }
            total += n;
            self.touched |= port_bit(p);
            if self.cfg.metrics {
                self.metrics.rx_batch(p, n);
            }
            let t = *now.get_or_insert_with(|| self.clock.now());
            // Captured as received, before the router rewrites the frames in place.
            if self.capture.armed_for(p) {
                let port = self.group.port(p);
                self.capture.offer(t.as_nanos(), self.rx.iter().map(|d| (p, port.frame(d))));
            }
            match &mut self.mode {
                Mode::Router { router, .. } => {
                    {
                        let mut port = self.group.port(p);
                        let mut batch = GroupBatch { port: &mut port, descs: self.rx.as_slice() };
                        router.handle_rx(t, p, &mut batch, &mut self.actions[..n]);
                    }
                    for i in 0..n {
                        let mut d = self.rx.as_slice()[i];
                        match self.actions[i] {
                            Action::Send { port, len, hdr } => {
                                d.len = len;
                                d.hdr = hdr;
                                if !self.tx[usize::from(port)].push(d) {
                                    self.tx_full_drops += 1;
                                    self.group.port(p).free(&d);
                                }
                            }
                            Action::Free | Action::Deliver(_) => self.group.port(p).free(&d),
                        }
                    }
                }
                Mode::Xconnect { peer, pairs } => {
                    let Some(q) = peer[p] else {
                        self.group.port(p).free_burst(&mut self.rx);
                        continue;
                    };
                    for pair in pairs.iter_mut() {
                        if pair.ports.0 == p {
                            pair.a_to_b += n as u64;
                        } else if pair.ports.1 == p {
                            pair.b_to_a += n as u64;
                        }
                    }
                    for &d in self.rx.as_slice() {
                        if !self.tx[q].push(d) {
                            self.tx_full_drops += 1;
                            self.group.port(p).free(&d);
                        }
                    }
                }
            }
            self.rx.clear();
        }
        total
    }

    /// Timers, neighbour hints to and from the sibling workers, the readiness listener, the
    /// ports' apps.
    fn housekeeping(
        router: &mut Router,
        hints: &mut Option<HintLinks>,
        listener: &mut Option<Vec<libos::tcp::ListenHandle>>,
        accepted: &mut u64,
        apps: &mut [PortApp],
        now: Instant,
    ) {
        if router.poll_timeout().is_some_and(|t| t <= now) {
            router.handle_timeout(now);
        }
        if let Some(h) = hints {
            for p in 0..router.ports() {
                while let Ok(hint) = h.inbox[p].try_recv() {
                    router.handle_neighbor_hint(now, p, hint);
                }
                while let Some(hint) = router.poll_neighbor_learned(p) {
                    for s in &h.peers[p] {
                        if let Err(TrySendError::Full(_)) = s.try_send(hint) {
                            h.dropped += 1;
                        }
                    }
                }
            }
        }
        if let Some(ls) = listener {
            for (p, &l) in ls.iter().enumerate() {
                let tcp = router.stack_mut(p).tcp_mut();
                while let Ok(c) = tcp.accept(l) {
                    *accepted += 1;
                    let _ = tcp.close(now, c);
                }
            }
        }
        for (p, app) in apps.iter_mut().enumerate() {
            app.poll(now, router.stack_mut(p));
        }
    }

    /// The stacks' own frames; with `full`, first the [`housekeeping`](Self::housekeeping)
    /// (every [`PUBLISH_EVERY`] busy iterations and at idle checks: its deadlines are
    /// milliseconds, an iteration microseconds).
    fn router_work(&mut self, now: Instant, full: bool) -> usize {
        let Mode::Router { router, listener, accepted, apps } = &mut self.mode else { return 0 };
        if full {
            Self::housekeeping(router, &mut self.hints, listener, accepted, apps, now);
            if let Some(m) = &mut self.mirror {
                m.sync(router, now);
            }
            if let Some(w) = &mut self.watch {
                w.check(now);
            }
        }
        let mut made = 0;
        for q in 0..router.ports() {
            if !router.wants_tx(q) {
                continue;
            }
            let room = self.cfg.burst.saturating_sub(self.tx[q].len());
            if room == 0 {
                continue;
            }
            let mut port = self.group.port(q);
            let spare = &mut self.spare[q];
            if spare.len() < room {
                let missing = room - spare.len();
                if port.alloc_burst(spare, missing) < missing {
                    port.reclaim();
                    let missing = room.saturating_sub(spare.len());
                    port.alloc_burst(spare, missing);
                }
            }
            let limit = room.min(spare.len());
            if limit == 0 {
                continue;
            }
            let used = {
                let mut slots = PortSlots::new(&mut port, &mut spare.as_mut_slice()[..limit]);
                router.poll_tx(now, q, &mut slots);
                slots.used()
            };
            for i in 0..used {
                // Cannot fail: tx.len() + used <= burst <= MAX_BURST.
                self.tx[q].push(spare.as_slice()[i]);
            }
            spare.consume_front(used);
            made += used;
        }
        made
    }

    /// One `tx_burst` per port with frames (a second after reclaiming if the ring was full);
    /// keeps at most one burst of backlog per port.
    fn flush(&mut self) -> usize {
        let mut sent = 0;
        for q in 0..self.tx.len() {
            if self.tx[q].is_empty() {
                continue;
            }
            let mut port = self.group.port(q);
            let mut sent_q = port.tx_burst(&mut self.tx[q]);
            if !self.tx[q].is_empty() {
                port.reclaim();
                sent_q += port.tx_burst(&mut self.tx[q]);
            }
            sent += sent_q;
            if sent_q > 0 {
                self.touched |= port_bit(q);
                if self.cfg.metrics {
                    self.metrics.tx_batch(q, sent_q);
                }
            }
            let keep = self.cfg.burst;
            let b = &mut self.tx[q];
            if b.len() > keep {
                for i in keep..b.len() {
                    port.free(&b.as_slice()[i]);
                }
                self.tx_full_drops += (b.len() - keep) as u64;
                let mut k = 0;
                b.retain(|_| {
                    k += 1;
                    k <= keep
                });
            }
        }
        sent
    }

    /// A new table, if the control thread sent one; the old one goes back to it.
    fn take_fib(&mut self) {
        let (Some(link), Mode::Router { router, .. }) = (&self.fib_link, &mut self.mode) else {
            return;
        };
        while let Ok(fib) = link.new.try_recv() {
            let old = router.set_fib(fib);
            self.fib_swaps += 1;
            // A full return channel: drop it here (rare: the control thread drains it).
            let _ = link.retired.try_send(old);
        }
    }

    /// One iteration at a fresh clock reading (tests and the idle check); returns whether
    /// anything moved.
    pub fn poll_once(&mut self) -> bool {
        let mut now = Some(self.clock.now());
        self.step(&mut now)
    }

    #[inline]
    fn step(&mut self, now: &mut Option<Instant>) -> bool {
        let received = self.receive(now);
        let t = *now.get_or_insert_with(|| self.clock.now());
        let made = self.router_work(t, true);
        let sent = self.flush();
        received > 0 || made > 0 || sent > 0
    }

    fn publish(&mut self) {
        let (mut rx, mut tx) = (0, 0);
        for p in 0..self.group.len() {
            let s = self.group.port(p).stats();
            rx += s.rx_packets;
            tx += s.tx_packets;
        }
        let c = &self.counters;
        c.rx.store(rx, Ordering::Relaxed);
        c.tx.store(tx, Ordering::Relaxed);
        let (fwd, local, dropped, accepted) = match &self.mode {
            Mode::Router { router, accepted, .. } => {
                let s = router.stats();
                let stack_drops: u64 =
                    (0..router.ports()).map(|p| router.stack(p).stats().total_drops()).sum();
                (s.forwarded, s.local, s.total_drops() + stack_drops, *accepted)
            }
            Mode::Xconnect { pairs, .. } => {
                (pairs.iter().map(|p| p.a_to_b + p.b_to_a).sum(), 0, 0, 0)
            }
        };
        c.forwarded.store(fwd, Ordering::Relaxed);
        c.local.store(local, Ordering::Relaxed);
        c.dropped.store(dropped + self.tx_full_drops, Ordering::Relaxed);
        c.accepted.store(accepted, Ordering::Relaxed);
        c.fib_swaps.store(self.fib_swaps, Ordering::Relaxed);
        if self.cfg.metrics {
            self.publish_metrics();
        }
    }

    /// Stores the plain counters into the metrics block; every [`SLOW_EVERY`] publications
    /// (and the first) also the gauges that cost a scan (ARP caches, UMEM states).
    fn publish_metrics(&mut self) {
        let m = &self.metrics;
        let slow = self.publications % SLOW_EVERY == 0;
        self.publications = self.publications.wrapping_add(1);
        let hints = self.hints.as_ref().map_or(0, |h| h.dropped);
        m.publish_loop(self.iterations, self.sleeps, self.tx_full_drops, hints);
        m.publish_fib_swaps(self.fib_swaps);
        for p in 0..self.group.len() {
            m.publish_port(p, &self.group.stats(p));
        }
        match &self.mode {
            Mode::Router { router, .. } => {
                m.publish_forward(router.stats());
                for p in 0..router.ports() {
                    let st = router.stack(p);
                    m.publish_stack(p, st.stats(), st.tcp().stats());
                    if slow {
                        let n = st.neighbors();
                        m.publish_arp(p, n.iter().count(), n.queued());
                    }
                }
            }
            Mode::Xconnect { pairs, .. } => {
                m.publish_xconnect(pairs.iter().map(|p| p.a_to_b + p.b_to_a).sum());
            }
        }
        if slow {
            m.publish_umem(&self.group.frame_counts());
        }
    }

    /// Runs iterations until `stop` is raised or `until` passes (see the module
    /// documentation). Frames stay held; call [`finish`](Self::finish) afterwards.
    pub fn run_loop(&mut self, stop: &AtomicBool, until: Option<std::time::Instant>) {
        let mut empties = 0u32;
        let mut busy = 0u32;
        // The heartbeat (crate::worker's module documentation): at the start, every few busy
        // batches, each idle visit, and before a sleep; stopped at the end.
        self.metrics.beat(std::time::Instant::now());
        while !stop.load(Ordering::Relaxed) {
            self.iterations += 1;
            self.touched = 0;
            let mut now = None;
            let received = self.receive(&mut now);
            // An empty poll looks at the TX backlog only: what the stacks originate comes from
            // received frames (handled in this iteration) or timers (visited below).
            if received == 0 && self.tx.iter().all(Burst::is_empty) {
                empties += 1;
                if empties % CHECK_EVERY == 0 && self.idle_check(until) {
                    break;
                }
                continue;
            }
            let t = *now.get_or_insert_with(|| self.clock.now());
            busy += 1;
            self.router_work(t, busy % PUBLISH_EVERY == 0);
            self.flush();
            if self.cfg.metrics {
                let nanos = self.clock.now().saturating_duration_since(t).as_nanos();
                self.metrics.batch(nanos as u64, self.touched);
            }
            self.idle_since = None;
            empties = 0;
            if busy % PUBLISH_EVERY == 0 {
                self.publish();
                self.take_fib();
                let t = std::time::Instant::now();
                self.metrics.beat(t);
                if until.is_some_and(|u| t >= u) {
                    break;
                }
            }
        }
        self.publish();
        self.metrics.beat_stopped();
    }

    /// The periodic visit of an idle loop: deadline (returns `true` when it has passed), a new
    /// table, timers and stack output, and the decision to sleep.
    fn idle_check(&mut self, until: Option<std::time::Instant>) -> bool {
        let t = std::time::Instant::now();
        if until.is_some_and(|u| t >= u) {
            return true;
        }
        self.metrics.beat(t);
        self.take_fib();
        let now = self.clock.at(t);
        if self.step(&mut Some(now)) {
            self.idle_since = None;
            self.publish();
            return false;
        }
        for p in 0..self.group.len() {
            self.group.port(p).reclaim();
        }
        let since = *self.idle_since.get_or_insert(t);
        if t.saturating_duration_since(since) < self.cfg.spin || self.wants_tx() {
            return false;
        }
        self.idle_since = None;
        let mut wait = self.cfg.idle_wait;
        if let Mode::Router { router, .. } = &self.mode {
            if let Some(timer) = router.poll_timeout() {
                wait = wait.min(timer.saturating_duration_since(now));
            }
        }
        if let Some(u) = until {
            wait = wait.min(u.saturating_duration_since(t));
        }
        if wait >= Duration::from_millis(1) {
            self.sleeps += 1;
            self.publish();
            self.metrics.beat(t + wait);
            let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
            // An error (EINTR) only ends the sleep early.
            let _ = self.group.wait_rx(ms);
        }
        false
    }

    /// Frees every held frame, drains what still arrives, waits (at most 500 ms) for the
    /// devices to hand back what they are sending, and audits the UMEM once the group is quiet.
    pub fn finish(&mut self, cpu: Option<usize>) -> ForwardReport {
        let n = self.group.len();
        for p in 0..n {
            let mut port = self.group.port(p);
            port.free_burst(&mut self.rx);
            port.free_burst(&mut self.tx[p]);
            port.free_burst(&mut self.spare[p]);
        }
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        let mut drained = 0u64;
        let frames = loop {
            for p in 0..n {
                let mut port = self.group.port(p);
                while port.rx_burst(&mut self.rx) > 0 {
                    drained += self.rx.len() as u64;
                    port.free_burst(&mut self.rx);
                }
                port.reclaim();
            }
            let c = self.group.frame_counts();
            let quiet = c.tx == 0 && c.kernel == 0 && c.completion == 0 && c.rx == 0;
            let late = std::time::Instant::now() >= deadline;
            if quiet || late {
                let check = self.group.audit().map_err(|e| e.to_string());
                if check.is_ok() || late {
                    break check;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.publish();
        let ports: Vec<PortStats> = (0..n).map(|p| self.group.port(p).stats()).collect();
        let xdp = (0..n).map(|p| self.group.xdp_statistics(p).unwrap_or_default()).collect();
        let (forward, stacks, pairs, accepted) = match &self.mode {
            Mode::Router { router, accepted, .. } => (
                Some(router.stats().clone()),
                (0..router.ports()).map(|p| router.stack(p).stats().clone()).collect(),
                Vec::new(),
                *accepted,
            ),
            Mode::Xconnect { pairs, .. } => (None, Vec::new(), pairs.clone(), 0),
        };
        ForwardReport {
            queue: self.queue,
            cpu,
            ports,
            xdp,
            forward,
            stacks,
            pairs,
            frames,
            tx_full_drops: self.tx_full_drops,
            drained,
            iterations: self.iterations,
            sleeps: self.sleeps,
            hints_dropped: self.hints.as_ref().map_or(0, |h| h.dropped),
            fib_swaps: self.fib_swaps,
            accepted,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The service.

/// The role of worker `k` (queue index `k` of every interface): its router (one stack per
/// interface with the interface's MAC, the static neighbours, the shared table, the readiness
/// listener) or its cross-connected pairs.
fn worker_mode(
    cfg: &ForwardConfig,
    k: u32,
    macs: &[[u8; 6]],
    fib: &Option<Arc<Fib>>,
    clock: Clock,
) -> anyhow::Result<Mode> {
    let n = cfg.ifaces.len();
    let mode = match &cfg.role {
        Role::Router { neighbors, tcp_listen, .. } => {
            let mut sc = stack_configs(cfg, macs);
            for (p, c) in sc.iter_mut().enumerate() {
                c.tx_csum_offload = false;
                if k != 0 {
                    c.arp.announce_count = 0;
                }
                for &(_, ip, mac) in neighbors.iter().filter(|n| n.0 == p) {
                    c.static_neighbors.push((ip, EthernetAddress(mac)));
                }
            }
            let fib = fib.clone().unwrap_or_else(|| Arc::new(Fib::empty()));
            let mut router = Router::new(RouterConfig::new(sc), fib, clock.now())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let listener = match tcp_listen {
                Some(port) => {
                    let any = std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, *port);
                    let mut ls = Vec::new();
                    for p in 0..n {
                        ls.push(
                            router
                                .stack_mut(p)
                                .tcp_listen(any, 64)
                                .map_err(|e| anyhow::anyhow!("listen on {port}: {e:?}"))?,
                        );
                    }
                    Some(ls)
                }
                None => None,
            };
            Mode::Router { router: Box::new(router), listener, accepted: 0, apps: Vec::new() }
        }
        Role::Xconnect { pairs } => {
            let mut peer = vec![None; n];
            for &(a, b) in pairs {
                peer[a] = Some(b);
                peer[b] = Some(a);
            }
            let pairs = pairs
                .iter()
                .map(|&(a, b)| PairStats { ports: (a, b), ..Default::default() })
                .collect();
            Mode::Xconnect { peer, pairs }
        }
    };
    Ok(mode)
}

/// A running forwarding service (see the module documentation).
#[derive(Debug)]
pub struct ForwardService {
    progs: Vec<XdpProgram>,
    workers: Vec<JoinHandle<anyhow::Result<ForwardReport>>>,
    counters: Vec<Arc<ForwardCounters>>,
    metrics: Arc<ServiceMetrics>,
    captures: Vec<CaptureTarget>,
    fib_tx: Vec<SyncSender<Arc<Fib>>>,
    retired: Receiver<Arc<Fib>>,
    stop: Arc<AtomicBool>,
    mode: String,
    fast: Option<FastPathCtl>,
    fast_path: FastPathMode,
}

impl Drop for ForwardService {
    fn drop(&mut self) {
        // Without `join` (an error path): stop the workers; the programs detach on drop.
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl ForwardService {
    /// Attaches the steering programs, opens one shared-UMEM group per queue index, builds the
    /// routers (or pairs), starts the workers, and only then steers every frame of the
    /// interfaces to the sockets; all in the calling thread's network namespace.
    pub fn start(cfg: &ForwardConfig) -> anyhow::Result<ForwardService> {
        Self::start_with(cfg, Vec::new())
    }

    /// [`start`](Self::start), with `apps[k][p]` polled beside the stack of port `p` of router
    /// worker `k` between batches (the daemon's services on the router's own addresses; an
    /// empty list: none).
    pub fn start_with(
        cfg: &ForwardConfig,
        mut apps: Vec<Vec<PortApp>>,
    ) -> anyhow::Result<ForwardService> {
        anyhow::ensure!(!cfg.ifaces.is_empty(), "forward: no interface");
        anyhow::ensure!(cfg.queues >= 1, "forward: no queue to serve");
        let n = cfg.ifaces.len();
        let mut macs = Vec::with_capacity(n);
        let mut progs = Vec::with_capacity(n);
        let wants_fast =
            matches!(cfg.role, Role::Router { .. }) && cfg.fast_path != FastPathMode::Userspace;
        for i in &cfg.ifaces {
            macs.push(
                nic::netdev::mac_address(&i.name)
                    .with_context(|| format!("read the MAC address of {}", i.name))?,
            );
            if !wants_fast {
                progs.push(
                    XdpProgram::attach(&i.name, cfg.mode)
                        .with_context(|| format!("attach the steering program to {}", i.name))?,
                );
            }
        }
        // The router's fast path: the forwarding program on every interface instead (it
        // steers like the steering program, and forwards once activated below).
        let mut fast = None;
        if wants_fast {
            let names: Vec<&str> = cfg.ifaces.iter().map(|i| i.name.as_str()).collect();
            let (p, ctl) = FastPathCtl::attach(&names, cfg.mode)?;
            progs = p;
            fast = Some(ctl);
        }
        let clock = Clock::new();
        let fib = match &cfg.role {
            Role::Router { fib: Some(f), .. } => Some(f.clone()),
            Role::Router { routes, .. } => Some(build_fib(&cfg.ifaces, routes)),
            Role::Xconnect { pairs } => {
                for &(a, b) in pairs {
                    anyhow::ensure!(a < n && b < n && a != b, "xconnect: bad pair ({a}, {b})");
                }
                None
            }
        };
        let workers = cfg.queues as usize;
        let mut hints = hint_links(workers, n).into_iter();
        let (retired_tx, retired) = std::sync::mpsc::sync_channel(workers * 2 + 2);
        let stop = Arc::new(AtomicBool::new(false));
        let mut built = Vec::with_capacity(workers);
        let mut metrics = ServiceMetrics::default();
        for p in &progs {
            metrics.programs.push(p.verdict_reader()?);
        }
        let names: Vec<&str> = cfg.ifaces.iter().map(|i| i.name.as_str()).collect();
        let (role, forwarding, stacks): (&'static str, _, &[&str]) = match &cfg.role {
            Role::Router { .. } => ("router", Forwarding::Router, names.as_slice()),
            Role::Xconnect { .. } => ("xconnect", Forwarding::Xconnect, &[][..]),
        };
        let mut fib_tx = Vec::new();
        let mut captures = Vec::new();
        for k in 0..cfg.queues {
            let members: Vec<(XskConfig, &XdpProgram)> = cfg
                .ifaces
                .iter()
                .zip(&progs)
                .map(|(i, p)| {
                    (XskConfig { ifname: i.name.clone(), queue: k, ..cfg.socket.clone() }, p)
                })
                .collect();
            let group = XskGroup::open(&members)
                .with_context(|| format!("open queue {k} of every interface"))?;
            for (i, iface) in cfg.ifaces.iter().enumerate() {
                metrics.sockets.push(SocketReader {
                    worker: k,
                    interface: iface.name.clone(),
                    queue: k,
                    reader: group.stats_reader(i)?,
                });
            }
            let mut mode = worker_mode(cfg, k, &macs, &fib, clock)?;
            if let (Mode::Router { apps: slot, .. }, Some(a)) =
                (&mut mode, apps.get_mut(k as usize))
            {
                anyhow::ensure!(
                    a.len() == n,
                    "forward: worker {k} has {} apps for {n} ports",
                    a.len()
                );
                *slot = std::mem::take(a);
            }
            let mut w = ForwardWorker::new(group, mode, k, cfg.worker, clock);
            let ports: Vec<(&str, u32)> = names.iter().map(|&n| (n, k)).collect();
            w.metrics = Arc::new(WorkerMetrics::new(k, role, &ports, stacks, forwarding));
            metrics.workers.push(w.metrics.clone());
            captures.extend(w.capture_targets(&cfg.ifaces));
            w.hints = hints.next();
            if fib.is_some() {
                let (tx, rx) = std::sync::mpsc::sync_channel(2);
                w.fib_link = Some(FibLink { new: rx, retired: retired_tx.clone() });
                fib_tx.push(tx);
            }
            built.push(w);
        }
        // Auto: userspace where every socket is zero-copy, XDP otherwise.
        let fast_path = match (&mut fast, &fib) {
            (Some(ctl), Some(fib)) => {
                let zero_copy =
                    built.iter().all(|w| (0..w.group.len()).all(|i| w.group.caps(i).zero_copy));
                let ports: Vec<FpPort> = progs
                    .iter()
                    .zip(&macs)
                    .zip(&cfg.ifaces)
                    .map(|((p, mac), i)| FpPort {
                        ifindex: p.ifindex(),
                        mac: *mac,
                        mtu: u32::try_from(i.mtu).unwrap_or(u32::MAX),
                    })
                    .collect();
                let mode = ctl.activate(cfg.fast_path, zero_copy, &ports, fib)?;
                if mode == FastPathMode::Xdp {
                    if let Some(w) = built.first_mut() {
                        w.mirror = Some(NeighborMirror::new(ctl.neighbors()?, n));
                        let names: Vec<&str> = cfg.ifaces.iter().map(|i| i.name.as_str()).collect();
                        w.watch = Some(PortWatch::new(ctl.ports()?, &names));
                    }
                }
                tracing::info!(
                    requested = cfg.fast_path.as_str(),
                    fast_path = mode.as_str(),
                    zero_copy,
                    "router fast path"
                );
                mode
            }
            _ => FastPathMode::Userspace,
        };
        let mut handles = Vec::new();
        let mut counters = Vec::new();
        for (i, mut w) in built.into_iter().enumerate() {
            let cpu = (!cfg.cpus.is_empty()).then(|| cfg.cpus[i % cfg.cpus.len()]);
            counters.push(w.counters().clone());
            let stop = stop.clone();
            let h = std::thread::Builder::new()
                .name(format!("xdpos-fwd{i}"))
                .spawn(move || {
                    let pinned = cpu
                        .filter(|&id| core_affinity::set_for_current(core_affinity::CoreId { id }));
                    if cpu.is_some() && pinned.is_none() {
                        tracing::warn!(worker = i, cpu = ?cpu, "cannot pin the worker");
                    }
                    w.metrics().set_cpu(pinned);
                    if w.cfg.drop_capabilities {
                        if let Err(e) = crate::daemon::caps::drop_thread(Default::default()) {
                            tracing::warn!(worker = i, error = %e, "cannot drop capabilities");
                        }
                    }
                    w.run_loop(&stop, None);
                    Ok(w.finish(pinned))
                })
                .context("spawn a forwarding worker")?;
            handles.push(h);
        }
        for p in &progs {
            p.steer_all()?;
        }
        let mode = progs.first().map_or("detached", |p| p.mode().as_str()).to_string();
        tracing::info!(
            interfaces = ?cfg.ifaces.iter().map(|i| &i.name).collect::<Vec<_>>(),
            queues = cfg.queues, mode = %mode, "forwarding"
        );
        metrics.fast_path = fast.as_ref().map(FastPathCtl::reader).transpose()?;
        let metrics = Arc::new(metrics);
        Ok(ForwardService {
            progs,
            workers: handles,
            counters,
            metrics,
            captures,
            fib_tx,
            retired,
            stop,
            mode,
            fast,
            fast_path,
        })
    }

    /// Starts one worker per group the caller opened on a backend other than AF_XDP (group `k`
    /// polls queue `k` of every interface of `cfg`, in port order; `macs` are the interfaces'
    /// MAC addresses). Nothing is steered: the caller's devices hand every frame to the groups,
    /// and the caller stops them after [`join`](Self::join). [`xdp_mode`](Self::xdp_mode)
    /// answers `label`.
    pub fn start_groups<G>(
        cfg: &ForwardConfig,
        macs: &[[u8; 6]],
        groups: Vec<G>,
        label: &str,
    ) -> anyhow::Result<ForwardService>
    where
        G: FwdGroup + std::fmt::Debug + Send + 'static,
    {
        let n = cfg.ifaces.len();
        anyhow::ensure!(n > 0 && macs.len() == n, "forward: {n} interfaces, {} MACs", macs.len());
        anyhow::ensure!(
            !groups.is_empty() && groups.len() == cfg.queues as usize,
            "forward: {} groups for {} queues",
            groups.len(),
            cfg.queues
        );
        anyhow::ensure!(groups.iter().all(|g| g.len() == n), "forward: a group misses a port");
        let clock = Clock::new();
        let fib = match &cfg.role {
            Role::Router { fib: Some(f), .. } => Some(f.clone()),
            Role::Router { routes, .. } => Some(build_fib(&cfg.ifaces, routes)),
            Role::Xconnect { pairs } => {
                for &(a, b) in pairs {
                    anyhow::ensure!(a < n && b < n && a != b, "xconnect: bad pair ({a}, {b})");
                }
                None
            }
        };
        let workers = groups.len();
        let mut hints = hint_links(workers, n).into_iter();
        let (retired_tx, retired) = std::sync::mpsc::sync_channel(workers * 2 + 2);
        let stop = Arc::new(AtomicBool::new(false));
        let mut fib_tx = Vec::new();
        let mut built = Vec::with_capacity(workers);
        let mut captures = Vec::new();
        for (k, group) in groups.into_iter().enumerate() {
            let mode = worker_mode(cfg, k as u32, macs, &fib, clock)?;
            let mut w = ForwardWorker::new(group, mode, k as u32, cfg.worker, clock);
            captures.extend(w.capture_targets(&cfg.ifaces));
            w.hints = hints.next();
            if fib.is_some() {
                let (tx, rx) = std::sync::mpsc::sync_channel(2);
                w.fib_link = Some(FibLink { new: rx, retired: retired_tx.clone() });
                fib_tx.push(tx);
            }
            built.push(w);
        }
        let mut handles = Vec::new();
        let mut counters = Vec::new();
        for (i, mut w) in built.into_iter().enumerate() {
            let cpu = (!cfg.cpus.is_empty()).then(|| cfg.cpus[i % cfg.cpus.len()]);
            counters.push(w.counters().clone());
            let stop_w = stop.clone();
            let h = std::thread::Builder::new().name(format!("xdpos-fwd{i}")).spawn(move || {
                let pinned =
                    cpu.filter(|&id| core_affinity::set_for_current(core_affinity::CoreId { id }));
                if cpu.is_some() && pinned.is_none() {
                    tracing::warn!(worker = i, cpu = ?cpu, "cannot pin the worker");
                }
                w.run_loop(&stop_w, None);
                Ok(w.finish(pinned))
            });
            match h {
                Ok(h) => handles.push(h),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(anyhow::Error::from(e).context("spawn a forwarding worker"));
                }
            }
        }
        tracing::info!(
            interfaces = ?cfg.ifaces.iter().map(|i| &i.name).collect::<Vec<_>>(),
            queues = cfg.queues, backend = label, "forwarding"
        );
        Ok(ForwardService {
            progs: Vec::new(),
            workers: handles,
            counters,
            metrics: Arc::new(ServiceMetrics::default()),
            captures,
            fib_tx,
            retired,
            stop,
            mode: label.to_string(),
            fast: None,
            fast_path: FastPathMode::Userspace,
        })
    }

    /// The XDP mode the programs run in.
    pub fn xdp_mode(&self) -> &str {
        &self.mode
    }

    /// Whether every worker thread still runs (a worker that panicked or failed has ended).
    pub fn workers_running(&self) -> bool {
        self.workers.iter().all(|w| !w.is_finished())
    }

    /// Live counters per worker.
    pub fn counters(&self) -> &[Arc<ForwardCounters>] {
        &self.counters
    }

    /// The service's metrics, for a [`crate::metrics::Registry`].
    pub fn metrics(&self) -> Arc<ServiceMetrics> {
        self.metrics.clone()
    }

    /// The workers' capture points, one per interface and queue, for a
    /// [`crate::metrics::Registry`] (`xdpos capture`).
    pub fn captures(&self) -> Vec<CaptureTarget> {
        self.captures.clone()
    }

    /// Where packets with a known route and next hop are forwarded: `userspace` or `xdp`
    /// (`auto` is resolved at the start; a cross-connect says `userspace`).
    pub fn fast_path(&self) -> FastPathMode {
        self.fast_path
    }

    /// The XDP fast path's counters (forwarded, punted and dropped by reason, summed over
    /// CPUs); `None` without the forwarding program.
    pub fn fast_path_counters(&self) -> anyhow::Result<Option<FastPathCounters>> {
        self.fast.as_ref().map(FastPathCtl::counters).transpose()
    }

    /// Whether the fast path redirects out of port `port` (`false` while the port does not
    /// accept redirected frames, e.g. a veth whose peer has no NAPI: userspace transmits there);
    /// `None` without the forwarding program.
    pub fn fast_path_port_usable(&self, port: usize) -> anyhow::Result<Option<bool>> {
        self.fast.as_ref().map(|f| f.port_usable(port)).transpose()
    }

    /// A reader of the fast path's counters for another thread (metrics at scrape time);
    /// `None` without the forwarding program.
    pub fn fast_path_reader(&self) -> anyhow::Result<Option<FastPathReader>> {
        self.fast.as_ref().map(FastPathCtl::reader).transpose()
    }

    /// Hands a new table to every worker (applied between batches), after loading it into the
    /// XDP fast path (which flips between whole tables); frees the tables the workers gave
    /// back. Fails when a worker has two tables waiting already.
    pub fn set_fib(&self, fib: Arc<Fib>) -> anyhow::Result<()> {
        while self.retired.try_recv().is_ok() {}
        if let Some(f) = &self.fast {
            f.set_fib(&fib)?;
        }
        for tx in &self.fib_tx {
            tx.try_send(fib.clone())
                .map_err(|_| anyhow::anyhow!("forward: a worker has not taken the last table"))?;
        }
        Ok(())
    }

    /// Stops the inflow, then the workers; collects their reports and detaches the programs.
    pub fn join(mut self) -> anyhow::Result<Vec<ForwardReport>> {
        let mut failed: Option<anyhow::Error> = None;
        for p in &self.progs {
            if let Err(e) = p.steer_none() {
                failed = Some(e.into());
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        let mut reports = Vec::new();
        for w in std::mem::take(&mut self.workers) {
            match w.join() {
                Ok(Ok(r)) => reports.push(r),
                Ok(Err(e)) => failed = Some(e),
                Err(_) => failed = Some(anyhow::anyhow!("a forwarding worker panicked")),
            }
        }
        while self.retired.try_recv().is_ok() {}
        for p in std::mem::take(&mut self.progs) {
            p.detach()?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(reports),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `xdpos forward`: a router or cross-connect from command-line flags (for tests, benchmarks
// and experiments; the daemon drives the same service from its configuration file).

/// `xdpos forward` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ForwardArgs {
    /// What to be: an IPv4 router or an L2 cross-connect.
    #[arg(long, value_parser = ["router", "xconnect"], default_value = "router")]
    pub role: String,
    /// An interface, in port order: `NAME` or `NAME=ADDR/LEN[+ADDR/LEN…]` (router addresses).
    #[arg(long = "iface", required = true)]
    pub ifaces: Vec<String>,
    /// A static route: `PREFIX=GATEWAY` (the egress is the interface whose prefix holds the
    /// gateway) or `PREFIX=blackhole`.
    #[arg(long = "route")]
    pub routes: Vec<String>,
    /// A static neighbour: `ADDR=MAC` (on the interface whose prefix holds it).
    #[arg(long = "neighbor")]
    pub neighbors: Vec<String>,
    /// Add this many random routes with the BGP table's length mix (`libos::fib::internet_like`).
    #[arg(long, default_value_t = 0)]
    pub random_routes: usize,
    /// Gateway of the random routes (default: the gateway of the first `--route`).
    #[arg(long)]
    pub random_via: Option<Ipv4Addr>,
    /// Seed of the random routes.
    #[arg(long, default_value_t = 1)]
    pub random_seed: u64,
    /// Cross-connect pair `A,B` (interface names; default: the first two interfaces).
    #[arg(long = "pair")]
    pub pairs: Vec<String>,
    /// Queues per interface (one worker per queue index).
    #[arg(long, default_value_t = 1)]
    pub queues: u32,
    /// CPUs to pin the workers to, in turn.
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// XDP mode: auto (native, SKB fallback), native, skb.
    #[arg(long, value_parser = ["auto", "native", "skb"], default_value = "auto")]
    pub mode: String,
    /// Router: where packets with a known route and next hop are forwarded: the library OS
    /// (`userspace`, the default), the XDP program (`xdp`), or `auto` (userspace where the
    /// sockets bind in zero-copy mode, XDP otherwise). On veth, XDP redirects reach the far end
    /// only if it has an XDP program or GRO on; toward a port whose far end has neither, the
    /// router forwards in userspace (docs/forwarding.md).
    #[arg(long, value_parser = ["userspace", "xdp", "auto"], default_value = "userspace")]
    pub fast_path: String,
    /// IP MTU of every interface.
    #[arg(long, default_value_t = 1500)]
    pub mtu: usize,
    /// Descriptors per burst.
    #[arg(long, default_value_t = nic::DEFAULT_BURST)]
    pub burst: usize,
    /// UMEM frames per worker (shared by its sockets).
    #[arg(long, default_value_t = 4096)]
    pub frames: u32,
    /// Entries of every ring.
    #[arg(long, default_value_t = 2048)]
    pub ring: u32,
    /// Open a TCP listener on this port on the router's own addresses (accepts and closes
    /// connections: a readiness probe).
    #[arg(long)]
    pub tcp_listen: Option<u16>,
    /// Stop after this many seconds (default: until SIGTERM/SIGINT).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// The device layer (`--backend afxdp|dpdk`) and the DPDK settings ([`crate::dpdk`]).
    #[command(flatten)]
    pub dpdk: crate::dpdk::DpdkArgs,
    /// Serve /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
}

/// Parses `A.B.C.D/LEN`.
fn cidr(s: &str) -> anyhow::Result<Ipv4Cidr> {
    let c = crate::echo::parse_cidr(s)?;
    anyhow::ensure!(s.contains('/'), "{s:?}: give a prefix length (A.B.C.D/LEN)");
    Ok(c)
}

/// Parses `aa:bb:cc:dd:ee:ff`.
fn mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("MAC address {s:?}"))?;
    parts.try_into().map_err(|_| anyhow::anyhow!("MAC address {s:?}: six bytes"))
}

impl ForwardArgs {
    /// The service configuration the flags describe, and how many routes its table has.
    pub fn config(&self) -> anyhow::Result<ForwardConfig> {
        let mut ifaces = Vec::new();
        for spec in &self.ifaces {
            let (name, addrs) = match spec.split_once('=') {
                Some((n, a)) => (n, a.split('+').map(cidr).collect::<anyhow::Result<Vec<_>>>()?),
                None => (spec.as_str(), Vec::new()),
            };
            ifaces.push(IfaceSpec { name: name.to_string(), addrs, mtu: self.mtu });
        }
        let index = |name: &str| {
            ifaces
                .iter()
                .position(|i| i.name == name)
                .ok_or_else(|| anyhow::anyhow!("no interface {name:?} among --iface"))
        };
        let role = if self.role == "xconnect" {
            let mut pairs = Vec::new();
            for p in &self.pairs {
                let (a, b) = p.split_once(',').context("--pair A,B")?;
                pairs.push((index(a)?, index(b)?));
            }
            if pairs.is_empty() {
                anyhow::ensure!(ifaces.len() >= 2, "xconnect: give two interfaces");
                pairs.push((0, 1));
            }
            Role::Xconnect { pairs }
        } else {
            anyhow::ensure!(
                ifaces.iter().all(|i| !i.addrs.is_empty()),
                "router: every --iface needs an address (NAME=ADDR/LEN)"
            );
            let mut routes = Vec::new();
            let mut first_gw = None;
            for r in &self.routes {
                let (p, to) = r.split_once('=').context("--route PREFIX=GATEWAY")?;
                let prefix = cidr(p)?;
                let next_hop = if to == "blackhole" {
                    NextHop::Blackhole
                } else {
                    let gw: Ipv4Addr = to.parse().with_context(|| format!("gateway in {r:?}"))?;
                    let iface = egress_for(&ifaces, gw)
                        .ok_or_else(|| anyhow::anyhow!("gateway {gw} is on no interface"))?;
                    first_gw.get_or_insert(gw);
                    NextHop::Forward { iface: iface as u16, via: Some(gw) }
                };
                routes.push(RouteSpec { prefix, next_hop });
            }
            let mut neighbors = Vec::new();
            for n in &self.neighbors {
                let (a, m) = n.split_once('=').context("--neighbor ADDR=MAC")?;
                let ip: Ipv4Addr = a.parse().with_context(|| format!("address in {n:?}"))?;
                let iface = egress_for(&ifaces, ip)
                    .ok_or_else(|| anyhow::anyhow!("neighbour {ip} is on no interface"))?;
                neighbors.push((iface, ip, mac(m)?));
            }
            let fib = if self.random_routes > 0 {
                let gw = self.random_via.or(first_gw).context("--random-routes needs a gateway")?;
                let iface = egress_for(&ifaces, gw)
                    .ok_or_else(|| anyhow::anyhow!("gateway {gw} is on no interface"))?;
                let t = std::time::Instant::now();
                let mut b = fib_builder(&ifaces, &routes);
                let nh = NextHop::Forward { iface: iface as u16, via: Some(gw) };
                for p in libos::fib::internet_like(self.random_routes, self.random_seed) {
                    if b.get(p).is_none() {
                        b.insert(p, nh);
                    }
                }
                let fib = b.build();
                tracing::info!(
                    routes = fib.routes(),
                    ms = t.elapsed().as_millis() as u64,
                    "table built"
                );
                Some(Arc::new(fib))
            } else {
                None
            };
            Role::Router { routes, neighbors, fib, tcp_listen: self.tcp_listen }
        };
        Ok(ForwardConfig {
            ifaces,
            role,
            queues: self.queues,
            cpus: self.cpus.clone(),
            mode: match self.mode.as_str() {
                "native" => XdpMode::Native,
                "skb" => XdpMode::Skb,
                _ => XdpMode::Auto,
            },
            socket: XskConfig {
                burst: self.burst,
                frames: self.frames,
                ring_size: self.ring,
                ..XskConfig::default()
            },
            worker: ForwardWorkerConfig { burst: self.burst, ..ForwardWorkerConfig::default() },
            fast_path: FastPathMode::parse(&self.fast_path)?,
        })
    }
}

/// `xdpos forward`: starts the service, prints a `ready:` line, runs until a signal or
/// `--seconds`, prints one line per worker and fails if any frame accounting is broken.
pub fn run_cli(args: &ForwardArgs) -> anyhow::Result<()> {
    let stop = crate::bench::Stop::on_signals()?;
    let cfg = args.config()?;
    let routes = match &cfg.role {
        Role::Router { fib: Some(f), .. } => f.routes(),
        Role::Router { routes, .. } => fib_builder(&cfg.ifaces, routes).len(),
        Role::Xconnect { .. } => 0,
    };
    // The endpoint comes up first: /readyz answers 503 until the service forwards.
    let registry = crate::metrics::Registry::new();
    let _server = match args.metrics {
        Some(addr) => {
            let s = crate::metrics::serve(addr, registry.clone())
                .with_context(|| format!("serve metrics on {addr}"))?;
            println!("metrics: http://{}/metrics", s.local_addr());
            Some(s)
        }
        None => None,
    };
    let (service, dpdk) = match args.dpdk.backend {
        crate::dpdk::Backend::Afxdp => (ForwardService::start(&cfg)?, None),
        crate::dpdk::Backend::Dpdk => {
            let (s, d) = crate::dpdk::start_forward(&cfg, &args.dpdk)?;
            (s, Some(d))
        }
    };
    let how = match &dpdk {
        Some(_) => service.xdp_mode().to_string(),
        None => format!("{} XDP", service.xdp_mode()),
    };
    registry.add(service.metrics());
    registry.add_captures(service.captures());
    if let Some(d) = &dpdk {
        registry.add(d.metrics());
    }
    registry.set_ready(true);
    let names: Vec<&str> = cfg.ifaces.iter().map(|i| i.name.as_str()).collect();
    // A line on stdout that scripts and tests wait for.
    println!(
        "ready: {} on {} ({} queue(s), {}, {routes} routes, fast path {})",
        args.role,
        names.join(","),
        cfg.queues,
        how,
        service.fast_path().as_str()
    );
    match args.seconds {
        Some(s) => {
            stop.sleep(Duration::from_secs_f64(s.max(0.0)));
        }
        None => {
            while !stop.requested() {
                stop.sleep(Duration::from_secs(3600));
            }
        }
    }
    registry.set_ready(false);
    let fast = service.fast_path_counters()?;
    let reports = service.join()?;
    let mut broken = false;
    for r in &reports {
        broken |= r.frames.is_err();
        println!("{}", r.line());
        for (i, name) in names.iter().enumerate() {
            println!("  {}", r.port_line(i, name));
        }
    }
    if let Some(d) = dpdk {
        for line in d.finish()? {
            println!("{line}");
        }
    }
    if let Some(c) = fast {
        let reasons: Vec<String> = nic::afxdp::FpOutcome::ALL
            .iter()
            .filter(|&&o| o.is_punt() && c.get(o).packets > 0)
            .map(|&o| format!("{}={}", o.name(), c.get(o).packets))
            .collect();
        println!(
            "fast path: forwarded {} punted {} dropped {} (blackhole); punts [{}]",
            c.forwarded(),
            c.punted(),
            c.dropped(),
            reasons.join(" ")
        );
    }
    anyhow::ensure!(!broken, "frame accounting broken");
    Ok(())
}
