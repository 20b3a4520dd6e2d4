//! # A worker's metrics block and what the collector makes of it
//!
//! What it is: [`WorkerMetrics`], the cells one worker writes (its loop, its batch histograms,
//! its ports, its stacks, its router, its UMEM) and the control thread reads; and
//! [`ServiceMetrics`], the [`Source`] of a running service: its workers' blocks plus what is
//! read from the kernel at scrape time (each socket's `XDP_STATISTICS`, each steering
//! program's per-CPU verdict counters), never counted twice in userspace.
//!
//! How a worker writes (DESIGN.md §6): per busy batch, the histograms (frames received, frames
//! sent, processing time) and the busy time, with relaxed load+store; the processing time goes
//! to the histogram of every socket (interface, queue) the batch received from or sent on, so
//! each queue has its own (a forwarding worker's batch spans one queue of every interface);
//! every few busy
//! iterations and before it sleeps, a snapshot of the plain single-writer counters it already
//! keeps (the port's [`PortStats`], the stack's [`Stats`] and TCP counters, the router's
//! [`ForwardStats`]) stored cell by cell; less often (every [`SLOW_EVERY`] publications) the
//! gauges that cost a scan (ARP entries, UMEM frames by state).
//!
//! Labels are bounded: `worker` (index), `interface` (configured names), `queue`, `reason`
//! (the closed enums `DropReason`, `FwdDrop`, `TcpDrop`), `state` (TCP states, UMEM frame
//! states), `verdict` (the steering program's four), and `role`/`cpu` on `xdpos_worker_info`.
//! docs/observability.md lists every family.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libos::forward::{ForwardStats, FwdDrop};
use libos::tcp::{TcpDrop, TcpState, TcpStats};
use libos::{DropReason, Stats};
use nic::afxdp::{FastPathReader, FpOutcome, VerdictReader, XskStatsReader};
use nic::{FrameCounts, PortStats};

use super::cells::{CachePadded, Cells, Histogram, BATCH_FRAMES, BATCH_NANOS};
use super::expo::{Exposition, Kind};
use super::Source;

/// Publications between two refreshes of the gauges that cost a scan.
pub const SLOW_EVERY: u32 = 64;

/// The bit of port `i` in the mask [`WorkerMetrics::batch`] takes (ports from the 64th on
/// share the last bit).
#[inline(always)]
pub const fn port_bit(i: usize) -> u64 {
    1 << if i < 63 { i } else { 63 }
}

// --- the worker's loop ---------------------------------------------------------------------

/// Cells of the worker's loop, by index.
const L_ITERATIONS: usize = 0;
const L_BUSY_NS: usize = 1;
const L_SLEEPS: usize = 2;
const L_TX_BACKLOG_DROPS: usize = 3;
const L_HINTS_DROPPED: usize = 4;
const L_FIB_SWAPS: usize = 5;
/// The heartbeat: nanoseconds from the block's epoch to the worker's last loop visit, plus one
/// ([`BEAT_NONE`]: the loop has not started; [`BEAT_STOPPED`]: it ended).
const L_HEARTBEAT: usize = 6;
const LOOP_N: usize = 7;

/// The heartbeat cell before the worker's loop starts.
const BEAT_NONE: u64 = 0;
/// The heartbeat cell once the worker's loop has ended (a thread that ended is `/healthz`'s
/// business, not a stall).
const BEAT_STOPPED: u64 = u64::MAX;

/// How long a running worker may go without a heartbeat before it counts as stalled. A worker
/// beats at least every [`crate::worker::CHECK_EVERY`] empty polls, every few busy batches and
/// around each idle sleep (at most `idle_wait`, 50 ms by default), so a second without one
/// means its loop is stuck (a batch that never ends, a blocking call, a descheduled thread).
pub const STALL_AFTER: Duration = Duration::from_secs(1);

/// What a worker's heartbeat says at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The worker's loop has not started yet.
    NotStarted,
    /// The worker's loop has ended.
    Stopped,
    /// The loop runs; its last beat is this old.
    Age(Duration),
}

impl Heartbeat {
    /// Reads a heartbeat cell (`beat`) at `now`, both as nanoseconds from the same epoch.
    pub fn at(beat: u64, now_nanos: u64) -> Heartbeat {
        match beat {
            BEAT_NONE => Heartbeat::NotStarted,
            BEAT_STOPPED => Heartbeat::Stopped,
            b => Heartbeat::Age(Duration::from_nanos(now_nanos.saturating_sub(b - 1))),
        }
    }

    /// How long the loop has gone without a beat when it is longer than `after` (a stall).
    pub fn stalled(self, after: Duration) -> Option<Duration> {
        match self {
            Heartbeat::Age(a) if a > after => Some(a),
            _ => None,
        }
    }
}

// --- a port (one socket: interface and queue) ------------------------------------------------

const PORT_N: usize = 13;
const PORT: [(&str, &str); PORT_N] = [
    ("xdpos_rx_packets_total", "Frames taken from the socket's RX ring."),
    ("xdpos_rx_bytes_total", "Bytes of the frames taken from the RX ring."),
    ("xdpos_rx_batches_total", "Non-empty receive bursts."),
    ("xdpos_tx_packets_total", "Frames put on the socket's TX ring."),
    ("xdpos_tx_bytes_total", "Bytes of the frames put on the TX ring."),
    ("xdpos_tx_batches_total", "Non-empty transmit bursts."),
    ("xdpos_kicks_total", "Wake-ups issued to the kernel (transmit kicks, fill-ring wake-ups)."),
    (
        "xdpos_tx_ring_full_total",
        "Transmit bursts that found the TX ring (or the free list behind it) too full for all their frames.",
    ),
    (
        "xdpos_fill_ring_starved_total",
        "Times the fill ring could not be topped up because no UMEM frame was free.",
    ),
    ("xdpos_tx_completions_total", "Frames reclaimed from the completion ring."),
    (
        "xdpos_invalid_descriptors_total",
        "Descriptors handed back that the worker did not hold (ignored).",
    ),
    ("xdpos_kick_errors_total", "Transmit kicks the kernel refused with an error."),
    (
        "xdpos_tx_checksum_software_total",
        "Partial checksums completed in software before the TX ring.",
    ),
];

fn port_values(s: &PortStats) -> [u64; PORT_N] {
    [
        s.rx_packets,
        s.rx_bytes,
        s.rx_bursts,
        s.tx_packets,
        s.tx_bytes,
        s.tx_bursts,
        s.kicks,
        s.tx_ring_full,
        s.fill_starved,
        s.completions,
        s.invalid_descs,
        s.kick_errors,
        s.tx_csum_sw,
    ]
}

/// The cells of one port.
#[derive(Debug)]
pub struct PortMetrics {
    interface: String,
    queue: String,
    stats: Cells<PORT_N>,
    rx_batch: Histogram,
    tx_batch: Histogram,
    /// Processing time of the batches that received from or sent on this socket.
    batch_ns: Histogram,
}

// --- a stack -----------------------------------------------------------------------------------

const STACK_N: usize = 15;
const STACK: [(&str, &str); STACK_N] = [
    ("xdpos_stack_rx_frames_total", "Frames handed to the stack."),
    ("xdpos_stack_rx_bytes_total", "Bytes of the frames handed to the stack."),
    (
        "xdpos_stack_tx_in_place_total",
        "Frames the stack answered in place (sent from the frame they arrived in).",
    ),
    ("xdpos_stack_tx_frames_total", "Frames the stack originated."),
    ("xdpos_stack_tx_bytes_total", "Bytes of the frames the stack originated."),
    ("xdpos_arp_requests_sent_total", "ARP requests sent (resolution, probes, announcements)."),
    ("xdpos_arp_replies_sent_total", "ARP replies sent."),
    ("xdpos_arp_conflicts_total", "ARP packets from another host claiming one of our addresses."),
    ("xdpos_icmp_echo_replies_total", "ICMP echo replies sent."),
    ("xdpos_icmp_errors_sent_total", "ICMP errors sent (unreachable, time exceeded)."),
    (
        "xdpos_icmp_rate_limited_total",
        "ICMP errors suppressed by the rate limit or a full error queue.",
    ),
    ("xdpos_udp_rx_datagrams_total", "UDP datagrams delivered to sockets."),
    ("xdpos_udp_tx_datagrams_total", "UDP datagrams sent (socket sends, echoes, generators)."),
    ("xdpos_ipv4_reassembled_total", "IPv4 datagrams reassembled from fragments."),
    ("xdpos_ipv4_fragments_sent_total", "IPv4 fragments sent."),
];

fn stack_values(s: &Stats) -> [u64; STACK_N] {
    [
        s.rx_frames,
        s.rx_bytes,
        s.tx_in_place,
        s.tx_frames,
        s.tx_bytes,
        s.arp_requests_sent,
        s.arp_replies_sent,
        s.arp_conflicts,
        s.icmp_echo_replies,
        s.icmp_errors_sent,
        s.icmp_rate_limited,
        s.udp_rx_datagrams,
        s.udp_tx_datagrams,
        s.reassembled,
        s.fragments_sent,
    ]
}

/// Stack drop reasons that are UDP errors (`netstat -su`'s no ports, receive buffer, too big).
const UDP_ERRORS: [DropReason; 3] =
    [DropReason::NoSocket, DropReason::SocketFull, DropReason::TooBig];

const TCP_N: usize = 29;
const TCP: [(&str, &str); TCP_N] = [
    ("xdpos_tcp_active_opens_total", "Connections started by connect."),
    ("xdpos_tcp_passive_opens_total", "Connections started by a SYN to a listener."),
    ("xdpos_tcp_accepts_total", "Connections handed out by accept."),
    ("xdpos_tcp_connect_failures_total", "Active opens that failed (refused or timed out)."),
    ("xdpos_tcp_resets_sent_total", "RST segments sent."),
    ("xdpos_tcp_resets_received_total", "RST segments received that reset a connection."),
    ("xdpos_tcp_segments_received_total", "TCP segments received."),
    ("xdpos_tcp_segments_sent_total", "TCP segments sent."),
    ("xdpos_tcp_tso_frames_total", "TCP super-segments sent (software TSO)."),
    ("xdpos_tcp_gro_frames_total", "Coalesced TCP receive frames accepted (software GRO)."),
    ("xdpos_tcp_retransmitted_segments_total", "TCP segments retransmitted."),
    ("xdpos_tcp_rto_events_total", "TCP retransmission timeouts."),
    ("xdpos_tcp_fast_retransmits_total", "TCP fast retransmits."),
    ("xdpos_tcp_sack_recoveries_total", "TCP recoveries driven by SACK."),
    ("xdpos_tcp_lost_retransmits_total", "TCP retransmissions found lost by SACK."),
    (
        "xdpos_tcp_dsack_undos_total",
        "TCP congestion responses undone: every retransmission of the episode was D-SACKed.",
    ),
    ("xdpos_tcp_tail_loss_probes_total", "TCP tail-loss probes sent."),
    ("xdpos_tcp_window_probes_total", "TCP zero-window probes sent."),
    ("xdpos_tcp_keepalive_probes_total", "TCP keep-alive probes sent."),
    (
        "xdpos_tcp_timeouts_total",
        "TCP connections dropped by keep-alive or retransmission timeouts.",
    ),
    ("xdpos_tcp_delayed_acks_total", "TCP delayed ACKs sent by the timer."),
    ("xdpos_tcp_acks_sent_total", "TCP pure ACKs sent."),
    ("xdpos_tcp_challenge_acks_total", "TCP challenge ACKs sent (RFC 5961)."),
    (
        "xdpos_tcp_listen_overflows_total",
        "SYNs refused or ACKs dropped because an accept queue was full.",
    ),
    ("xdpos_tcp_syn_cookies_sent_total", "SYN cookies sent."),
    ("xdpos_tcp_syn_cookies_validated_total", "SYN cookies that validated."),
    ("xdpos_tcp_syn_cookies_failed_total", "ACKs to listeners whose cookie did not validate."),
    ("xdpos_tcp_time_wait_overflows_total", "TIME-WAIT entries dropped early (table full)."),
    ("xdpos_tcp_pmtu_updates_total", "Path-MTU reductions (ICMP fragmentation needed)."),
];

fn tcp_values(t: &TcpStats) -> [u64; TCP_N] {
    [
        t.active_opens,
        t.passive_opens,
        t.accepts,
        t.connect_failures,
        t.resets_sent,
        t.resets_received,
        t.segs_in,
        t.segs_out,
        t.tso_frames,
        t.gro_frames,
        t.retransmits,
        t.rto_events,
        t.fast_retransmits,
        t.sack_recoveries,
        t.lost_retransmits,
        t.dsack_undos,
        t.tail_loss_probes,
        t.window_probes,
        t.keepalive_probes,
        t.timeouts,
        t.delayed_acks,
        t.acks_sent,
        t.challenge_acks,
        t.listen_overflows,
        t.syn_cookies_sent,
        t.syn_cookies_validated,
        t.syn_cookies_failed,
        t.time_wait_overflows,
        t.pmtu_updates,
    ]
}

/// ARP gauges: entries in use, datagrams waiting for resolution.
const ARP_ENTRIES: usize = 0;
const ARP_QUEUED: usize = 1;

/// The cells of one stack.
#[derive(Debug)]
pub struct StackMetrics {
    interface: String,
    stats: Cells<STACK_N>,
    drops: Cells<{ DropReason::COUNT }>,
    tcp: Cells<TCP_N>,
    tcp_states: Cells<{ TcpState::COUNT }>,
    tcp_drops: Cells<{ TcpDrop::COUNT }>,
    arp: Cells<2>,
}

// --- the router ---------------------------------------------------------------------------------

const FWD_N: usize = 7;
const FWD: [(&str, &str); FWD_N] = [
    ("xdpos_forwarded_packets_total", "Packets forwarded (router) or frames cross-connected."),
    ("xdpos_forwarded_bytes_total", "Bytes of the packets forwarded in place (router)."),
    ("xdpos_forward_local_total", "Frames the router handed to a local stack."),
    ("xdpos_forward_arp_queued_total", "Packets queued while their next hop resolves."),
    ("xdpos_forward_with_options_total", "Packets with IPv4 options forwarded."),
    ("xdpos_forward_fragmented_total", "Packets queued for fragmentation."),
    ("xdpos_forward_fragments_sent_total", "Fragments sent by the router."),
];

fn fwd_values(f: &ForwardStats) -> [u64; FWD_N] {
    [
        f.forwarded,
        f.forwarded_bytes,
        f.local,
        f.arp_queued,
        f.with_options,
        f.fragmented,
        f.fragments_sent,
    ]
}

/// What the worker forwards: a router (every family of [`FWD`] and drops by [`FwdDrop`]), or a
/// cross-connect (forwarded frames only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    /// Not a forwarding worker.
    None,
    /// The IPv4 router.
    Router,
    /// The L2 cross-connect.
    Xconnect,
}

#[derive(Debug)]
struct ForwardCells {
    kind: Forwarding,
    stats: Cells<FWD_N>,
    drops: Cells<{ FwdDrop::COUNT }>,
}

// --- UMEM --------------------------------------------------------------------------------------

const UMEM_STATES: [&str; 7] = ["free", "fill", "rx", "held", "tx", "completion", "kernel"];

// --- the block ---------------------------------------------------------------------------------

/// One worker's metrics (see the module documentation). Built by the service before the
/// worker starts, shared (`Arc`) with the collector; written by that worker only.
#[derive(Debug)]
pub struct WorkerMetrics {
    worker: String,
    role: &'static str,
    cpu: AtomicI64,
    /// The heartbeat's zero (the block's creation).
    epoch: Instant,
    lp: CachePadded<Cells<LOOP_N>>,
    ports: Box<[CachePadded<PortMetrics>]>,
    stacks: Box<[CachePadded<StackMetrics>]>,
    forward: CachePadded<ForwardCells>,
    umem: CachePadded<Cells<8>>,
}

impl WorkerMetrics {
    /// The block of worker `worker` in `role` (`echo`, `router`, `xconnect`, …), over the
    /// sockets `ports` (interface, queue) and one stack per entry of `stacks` (interface).
    pub fn new(
        worker: u32,
        role: &'static str,
        ports: &[(&str, u32)],
        stacks: &[&str],
        forwarding: Forwarding,
    ) -> WorkerMetrics {
        WorkerMetrics {
            worker: worker.to_string(),
            role,
            cpu: AtomicI64::new(-1),
            epoch: Instant::now(),
            lp: Default::default(),
            ports: ports
                .iter()
                .map(|&(i, q)| {
                    CachePadded(PortMetrics {
                        interface: i.to_string(),
                        queue: q.to_string(),
                        stats: Cells::default(),
                        rx_batch: Histogram::new(BATCH_FRAMES),
                        tx_batch: Histogram::new(BATCH_FRAMES),
                        batch_ns: Histogram::new(BATCH_NANOS),
                    })
                })
                .collect(),
            stacks: stacks
                .iter()
                .map(|&i| {
                    CachePadded(StackMetrics {
                        interface: i.to_string(),
                        stats: Cells::default(),
                        drops: Cells::default(),
                        tcp: Cells::default(),
                        tcp_states: Cells::default(),
                        tcp_drops: Cells::default(),
                        arp: Cells::default(),
                    })
                })
                .collect(),
            forward: CachePadded(ForwardCells {
                kind: forwarding,
                stats: Cells::default(),
                drops: Cells::default(),
            }),
            umem: Default::default(),
        }
    }

    /// A block for one port and one stack, unlabelled (tests, benchmarks).
    pub fn single(role: &'static str) -> Arc<WorkerMetrics> {
        Arc::new(WorkerMetrics::new(0, role, &[("", 0)], &[""], Forwarding::None))
    }

    /// Records the CPU the worker is pinned to (from the worker's thread, once).
    pub fn set_cpu(&self, cpu: Option<usize>) {
        self.cpu.store(cpu.map_or(-1, |c| c as i64), Ordering::Relaxed);
    }

    /// The worker's label (its index).
    pub fn worker(&self) -> &str {
        &self.worker
    }

    // --- the heartbeat (the worker's loop; one relaxed store) ---

    /// The worker's loop is alive at `t` (called at its start, every few busy batches, at each
    /// idle visit and around sleeps; never per packet).
    #[inline]
    pub fn beat(&self, t: Instant) {
        let nanos = t.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.lp.set(L_HEARTBEAT, nanos.saturating_add(1).min(BEAT_STOPPED - 1));
    }

    /// The worker's loop has ended (not a stall).
    pub fn beat_stopped(&self) {
        self.lp.set(L_HEARTBEAT, BEAT_STOPPED);
    }

    /// The heartbeat at `now` (control side).
    pub fn heartbeat(&self, now: Instant) -> Heartbeat {
        let now = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        Heartbeat::at(self.lp.get(L_HEARTBEAT), now)
    }

    // --- per batch (fast path: relaxed load+store, no allocation) ---

    /// A busy batch took `nanos`; bit `i` of `ports` is set when it received from or sent on
    /// port `i` (a worker of one port passes 1; ports from the 64th on share bit 63, see
    /// [`port_bit`]). The busy time counts once, the histogram of each port once.
    #[inline]
    pub fn batch(&self, nanos: u64, ports: u64) {
        self.lp.add(L_BUSY_NS, nanos);
        let mut rest = ports;
        while rest != 0 {
            let i = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            if let Some(p) = self.ports.get(i) {
                p.batch_ns.observe(nanos);
            }
        }
    }

    /// Port `i` received a burst of `n` frames (n > 0).
    #[inline]
    pub fn rx_batch(&self, i: usize, n: usize) {
        if let Some(p) = self.ports.get(i) {
            p.rx_batch.observe(n as u64);
        }
    }

    /// Port `i` queued a burst of `n` frames for transmit (n > 0).
    #[inline]
    pub fn tx_batch(&self, i: usize, n: usize) {
        if let Some(p) = self.ports.get(i) {
            p.tx_batch.observe(n as u64);
        }
    }

    // --- publication (every few busy iterations) ---

    /// The loop's counters.
    pub fn publish_loop(&self, iterations: u64, sleeps: u64, tx_backlog_drops: u64, hints: u64) {
        self.lp.set(L_ITERATIONS, iterations);
        self.lp.set(L_SLEEPS, sleeps);
        self.lp.set(L_TX_BACKLOG_DROPS, tx_backlog_drops);
        self.lp.set(L_HINTS_DROPPED, hints);
    }

    /// Tables swapped in (router).
    pub fn publish_fib_swaps(&self, n: u64) {
        self.lp.set(L_FIB_SWAPS, n);
    }

    /// Port `i`'s counters.
    #[inline]
    pub fn publish_port(&self, i: usize, s: &PortStats) {
        if let Some(p) = self.ports.get(i) {
            p.stats.store(&port_values(s));
        }
    }

    /// Stack `i`'s counters.
    pub fn publish_stack(&self, i: usize, s: &Stats, tcp: &TcpStats) {
        if let Some(m) = self.stacks.get(i) {
            m.stats.store(&stack_values(s));
            m.drops.store(&s.drops);
            m.tcp.store(&tcp_values(tcp));
            m.tcp_states.store(&tcp.states);
            m.tcp_drops.store(&tcp.drops);
        }
    }

    /// Stack `i`'s ARP gauges (a scan of its cache: every [`SLOW_EVERY`] publications).
    pub fn publish_arp(&self, i: usize, entries: usize, queued: usize) {
        if let Some(m) = self.stacks.get(i) {
            m.arp.set(ARP_ENTRIES, entries as u64);
            m.arp.set(ARP_QUEUED, queued as u64);
        }
    }

    /// The router's counters.
    pub fn publish_forward(&self, f: &ForwardStats) {
        self.forward.stats.store(&fwd_values(f));
        self.forward.drops.store(&f.drops);
    }

    /// Frames cross-connected (cross-connect role).
    pub fn publish_xconnect(&self, frames: u64) {
        self.forward.stats.set(0, frames);
    }

    /// UMEM frames by state.
    pub fn publish_umem(&self, c: &FrameCounts) {
        self.umem.store(&[
            u64::from(c.total),
            u64::from(c.free),
            u64::from(c.fill),
            u64::from(c.rx),
            u64::from(c.held),
            u64::from(c.tx),
            u64::from(c.completion),
            u64::from(c.kernel),
        ]);
    }

    // --- collection (control thread) ---

    /// Writes this worker's families.
    pub fn collect(&self, e: &mut Exposition) {
        let w = self.worker.as_str();
        let cpu = match self.cpu.load(Ordering::Relaxed) {
            c if c >= 0 => c.to_string(),
            _ => "none".to_string(),
        };
        e.gauge(
            "xdpos_worker_info",
            "A worker: its role and the CPU it is pinned to (none: unpinned).",
            &[("worker", w), ("role", self.role), ("cpu", &cpu)],
            1.0,
        );
        let lw = [("worker", w)];
        let l = self.lp.snapshot();
        let beat = self.heartbeat(Instant::now());
        e.gauge(
            "xdpos_worker_heartbeat_age_seconds",
            "Time since the worker's loop last reported alive (monotonic clock; 0 before it starts and after it ends).",
            &lw,
            match beat {
                Heartbeat::Age(a) => a.as_secs_f64(),
                _ => 0.0,
            },
        );
        e.gauge(
            "xdpos_worker_stalled",
            "1 while the worker's loop has gone more than a second without a heartbeat (/readyz fails meanwhile).",
            &lw,
            f64::from(u8::from(beat.stalled(STALL_AFTER).is_some())),
        );
        e.counter(
            "xdpos_worker_poll_iterations_total",
            "Loop iterations (polls of the worker's sockets), busy or empty.",
            &lw,
            l[L_ITERATIONS],
        );
        e.counter_f64(
            "xdpos_worker_busy_seconds_total",
            "Time spent processing non-empty batches (its rate is the busy ratio).",
            &lw,
            l[L_BUSY_NS] as f64 / 1e9,
        );
        e.counter(
            "xdpos_worker_sleeps_total",
            "Times the idle worker slept on its sockets.",
            &lw,
            l[L_SLEEPS],
        );
        e.counter(
            "xdpos_worker_drops_total",
            "Frames the worker freed unsent, by reason (tx_backlog_full: the TX ring stayed full beyond one burst of backlog).",
            &[("worker", w), ("reason", "tx_backlog_full")],
            l[L_TX_BACKLOG_DROPS],
        );
        e.counter(
            "xdpos_worker_neighbor_hints_dropped_total",
            "Neighbour facts not passed to a sibling worker (its inbox was full).",
            &lw,
            l[L_HINTS_DROPPED],
        );
        for p in self.ports.iter() {
            let ls =
                [("worker", w), ("interface", p.interface.as_str()), ("queue", p.queue.as_str())];
            for (&(name, help), v) in PORT.iter().zip(p.stats.snapshot()) {
                e.counter(name, help, &ls, v);
            }
            let (b, sum) = p.rx_batch.snapshot();
            e.histogram(
                "xdpos_rx_batch_frames",
                "Frames per non-empty receive burst.",
                &ls,
                p.rx_batch.layout(),
                &b,
                sum,
            );
            let (b, sum) = p.tx_batch.snapshot();
            e.histogram(
                "xdpos_tx_batch_frames",
                "Frames per non-empty transmit burst.",
                &ls,
                p.tx_batch.layout(),
                &b,
                sum,
            );
            let (b, sum) = p.batch_ns.snapshot();
            e.histogram(
                "xdpos_batch_duration_seconds",
                "Time from the start of a non-empty batch to the end of its transmit flush, for the batches that received from or sent on the queue.",
                &ls,
                p.batch_ns.layout(),
                &b,
                sum,
            );
        }
        for s in self.stacks.iter() {
            let ls = [("worker", w), ("interface", s.interface.as_str())];
            for (&(name, help), v) in STACK.iter().zip(s.stats.snapshot()) {
                e.counter(name, help, &ls, v);
            }
            let drops = s.drops.snapshot();
            for r in DropReason::ALL {
                e.counter(
                    "xdpos_stack_drops_total",
                    "Frames (or datagrams to send) the stack dropped, by reason.",
                    &[("worker", w), ("interface", s.interface.as_str()), ("reason", r.as_str())],
                    drops[r as usize],
                );
            }
            for r in UDP_ERRORS {
                e.counter(
                    "xdpos_udp_errors_total",
                    "UDP datagrams not delivered: no socket on the port, socket queue full, too big for the socket.",
                    &[("worker", w), ("interface", s.interface.as_str()), ("reason", r.as_str())],
                    drops[r as usize],
                );
            }
            for (&(name, help), v) in TCP.iter().zip(s.tcp.snapshot()) {
                e.counter(name, help, &ls, v);
            }
            let states = s.tcp_states.snapshot();
            for st in TcpState::ALL {
                e.gauge(
                    "xdpos_tcp_connections",
                    "TCP connections by state (TIME-WAIT entries included).",
                    &[("worker", w), ("interface", s.interface.as_str()), ("state", st.as_str())],
                    states[st as usize] as f64,
                );
            }
            let drops = s.tcp_drops.snapshot();
            for r in TcpDrop::ALL {
                e.counter(
                    "xdpos_tcp_drops_total",
                    "TCP segments discarded by the state machine, by reason (their sum is xdpos_stack_drops_total{reason=\"tcp\"}).",
                    &[("worker", w), ("interface", s.interface.as_str()), ("reason", r.as_str())],
                    drops[r as usize],
                );
            }
            let arp = s.arp.snapshot();
            e.gauge(
                "xdpos_arp_entries",
                "Entries in use in the ARP cache.",
                &ls,
                arp[ARP_ENTRIES] as f64,
            );
            e.gauge(
                "xdpos_arp_pending_datagrams",
                "Datagrams waiting for ARP resolution.",
                &ls,
                arp[ARP_QUEUED] as f64,
            );
        }
        let f = &self.forward;
        match f.kind {
            Forwarding::None => {}
            Forwarding::Xconnect => {
                e.counter(FWD[0].0, FWD[0].1, &lw, f.stats.get(0));
            }
            Forwarding::Router => {
                for (&(name, help), v) in FWD.iter().zip(f.stats.snapshot()) {
                    e.counter(name, help, &lw, v);
                }
                let drops = f.drops.snapshot();
                for r in FwdDrop::ALL {
                    e.counter(
                        "xdpos_forward_drops_total",
                        "Packets the router dropped, by reason (the stacks count their own in xdpos_stack_drops_total).",
                        &[("worker", w), ("reason", r.as_str())],
                        drops[r as usize],
                    );
                }
                e.counter(
                    "xdpos_fib_swaps_total",
                    "Forwarding tables swapped in by this worker.",
                    &lw,
                    l[L_FIB_SWAPS],
                );
            }
        }
        let u = self.umem.snapshot();
        e.gauge("xdpos_umem_size_frames", "Frames of the worker's UMEM.", &lw, u[0] as f64);
        for (state, v) in UMEM_STATES.iter().zip(&u[1..]) {
            e.gauge(
                "xdpos_umem_frames",
                "UMEM frames by state (free list, fill ring, RX ring, held by the worker, TX ring, completion ring, in the kernel).",
                &[("worker", w), ("state", state)],
                *v as f64,
            );
        }
    }
}

// --- a service ---------------------------------------------------------------------------------

/// One socket's kernel counters, read at scrape time.
#[derive(Debug)]
pub struct SocketReader {
    /// Worker index.
    pub worker: u32,
    /// Interface.
    pub interface: String,
    /// Queue.
    pub queue: u32,
    /// The reader.
    pub reader: XskStatsReader,
}

/// The metrics of a running service: its workers' blocks, its sockets' and programs'
/// kernel counters.
#[derive(Debug, Default)]
pub struct ServiceMetrics {
    /// Per worker.
    pub workers: Vec<Arc<WorkerMetrics>>,
    /// Per socket.
    pub sockets: Vec<SocketReader>,
    /// Per steering program (one per interface).
    pub programs: Vec<VerdictReader>,
    /// The router's XDP fast path, when it runs: packets forwarded in the kernel never reach a
    /// worker, so its per-CPU counters are read here at scrape time.
    pub fast_path: Option<FastPathReader>,
}

const XSK: [(&str, &str); 6] = [
    (
        "xdpos_xsk_rx_dropped_total",
        "Kernel XDP_STATISTICS: frames dropped on the way into the socket for reasons other than invalid descriptors.",
    ),
    (
        "xdpos_xsk_rx_invalid_descriptors_total",
        "Kernel XDP_STATISTICS: invalid descriptors on the RX side.",
    ),
    (
        "xdpos_xsk_tx_invalid_descriptors_total",
        "Kernel XDP_STATISTICS: invalid descriptors on the TX ring.",
    ),
    (
        "xdpos_xsk_rx_ring_full_total",
        "Kernel XDP_STATISTICS: frames dropped because the socket's RX ring was full.",
    ),
    (
        "xdpos_xsk_fill_ring_empty_total",
        "Kernel XDP_STATISTICS: times the fill ring was empty when a frame arrived.",
    ),
    (
        "xdpos_xsk_tx_ring_empty_total",
        "Kernel XDP_STATISTICS: times the TX ring was empty when the kernel looked.",
    ),
];

impl Source for ServiceMetrics {
    fn stalled(&self, now: Instant) -> Vec<(String, Duration)> {
        self.workers
            .iter()
            .filter_map(|w| Some((w.worker.clone(), w.heartbeat(now).stalled(STALL_AFTER)?)))
            .collect()
    }

    fn collect(&self, e: &mut Exposition) {
        for w in &self.workers {
            w.collect(e);
        }
        for (name, help) in XSK {
            e.declare(name, help, Kind::Counter);
        }
        for s in &self.sockets {
            let Ok(x) = s.reader.read() else { continue };
            let worker = s.worker.to_string();
            let queue = s.queue.to_string();
            let ls = [
                ("worker", worker.as_str()),
                ("interface", s.interface.as_str()),
                ("queue", queue.as_str()),
            ];
            let v = [
                x.rx_dropped,
                x.rx_invalid_descs,
                x.tx_invalid_descs,
                x.rx_ring_full,
                x.rx_fill_ring_empty_descs,
                x.tx_ring_empty_descs,
            ];
            for (&(name, help), v) in XSK.iter().zip(v) {
                e.counter(name, help, &ls, v);
            }
        }
        let (hp, hb) = (
            "Frames seen by the steering program, by verdict (read from its per-CPU map).",
            "Bytes seen by the steering program, by verdict.",
        );
        if let Some(fp) = &self.fast_path {
            let (hp, hb) = (
                "Packets of the XDP fast path by outcome: forwarded in the kernel, punted to the workers (by reason), dropped (blackhole).",
                "Bytes of the XDP fast path by outcome.",
            );
            e.declare("xdpos_xdp_fast_path_packets_total", hp, Kind::Counter);
            e.declare("xdpos_xdp_fast_path_bytes_total", hb, Kind::Counter);
            if let Ok(c) = fp.read() {
                for (o, v) in FpOutcome::ALL.iter().zip(c.by_outcome) {
                    let ls = [("outcome", o.name())];
                    e.counter("xdpos_xdp_fast_path_packets_total", hp, &ls, v.packets);
                    e.counter("xdpos_xdp_fast_path_bytes_total", hb, &ls, v.bytes);
                }
            }
        }
        e.declare("xdpos_xdp_packets_total", hp, Kind::Counter);
        e.declare("xdpos_xdp_bytes_total", hb, Kind::Counter);
        for p in &self.programs {
            let Ok(v) = p.read() else { continue };
            for (verdict, c) in [
                ("redirect", v.redirect),
                ("pass_not_owned", v.pass_not_owned),
                ("pass_no_socket", v.pass_no_socket),
                ("pass_unparsed", v.pass_unparsed),
            ] {
                let ls = [("interface", p.ifname()), ("verdict", verdict)];
                e.counter("xdpos_xdp_packets_total", hp, &ls, c.packets);
                e.counter("xdpos_xdp_bytes_total", hb, &ls, c.bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_present_at_zero_before_any_traffic() {
        let m =
            WorkerMetrics::new(3, "router", &[("a", 0), ("b", 0)], &["a", "b"], Forwarding::Router);
        let mut e = Exposition::new();
        m.collect(&mut e);
        let t = e.render();
        for needle in [
            "xdpos_worker_info{worker=\"3\",role=\"router\",cpu=\"none\"} 1\n",
            "xdpos_rx_packets_total{worker=\"3\",interface=\"b\",queue=\"0\"} 0\n",
            "xdpos_stack_drops_total{worker=\"3\",interface=\"a\",reason=\"bad_checksum\"} 0\n",
            "xdpos_forward_drops_total{worker=\"3\",reason=\"no_route\"} 0\n",
            "xdpos_tcp_connections{worker=\"3\",interface=\"a\",state=\"established\"} 0\n",
            "xdpos_batch_duration_seconds_count{worker=\"3\",interface=\"b\",queue=\"0\"} 0\n",
            "xdpos_umem_frames{worker=\"3\",state=\"fill\"} 0\n",
        ] {
            assert!(t.contains(needle), "missing {needle:?} in\n{t}");
        }
    }

    #[test]
    fn batch_time_goes_to_every_queue_the_batch_touched_and_busy_time_counts_once() {
        let m = WorkerMetrics::new(
            2,
            "router",
            &[("a", 1), ("b", 1), ("c", 1)],
            &["a", "b", "c"],
            Forwarding::Router,
        );
        m.batch(3_000, port_bit(1));
        m.batch(5_000, port_bit(0) | port_bit(1));
        m.batch(700, 0);
        let mut e = Exposition::new();
        m.collect(&mut e);
        let t = e.render();
        for needle in [
            "xdpos_batch_duration_seconds_count{worker=\"2\",interface=\"a\",queue=\"1\"} 1\n",
            "xdpos_batch_duration_seconds_count{worker=\"2\",interface=\"b\",queue=\"1\"} 2\n",
            "xdpos_batch_duration_seconds_count{worker=\"2\",interface=\"c\",queue=\"1\"} 0\n",
            "xdpos_batch_duration_seconds_sum{worker=\"2\",interface=\"b\",queue=\"1\"} 0.000008\n",
            "xdpos_worker_busy_seconds_total{worker=\"2\"} 0.0000087\n",
        ] {
            assert!(t.contains(needle), "missing {needle:?} in\n{t}");
        }
        assert_eq!(
            (port_bit(0), port_bit(62), port_bit(63), port_bit(200)),
            (1, 1 << 62, 1 << 63, 1 << 63)
        );
    }

    #[test]
    fn a_worker_is_stalled_only_while_its_running_loop_misses_heartbeats() {
        // A fake clock: instants at fixed offsets from the block's epoch.
        let m = WorkerMetrics::new(1, "echo", &[("eth0", 0)], &["eth0"], Forwarding::None);
        let epoch = m.epoch;
        let at = |ms: u64| epoch + Duration::from_millis(ms);
        assert_eq!(m.heartbeat(at(60_000)), Heartbeat::NotStarted, "not started: not stalled");
        m.beat(at(1_000));
        assert_eq!(m.heartbeat(at(1_500)), Heartbeat::Age(Duration::from_millis(500)));
        assert_eq!(m.heartbeat(at(2_000)).stalled(STALL_AFTER), None, "exactly 1 s: not yet");
        assert_eq!(m.heartbeat(at(2_001)).stalled(STALL_AFTER), Some(Duration::from_millis(1_001)));
        // A scrape may read a beat newer than its own clock: age 0, not a wrap.
        assert_eq!(m.heartbeat(at(900)), Heartbeat::Age(Duration::ZERO));
        let svc = ServiceMetrics { workers: vec![Arc::new(m)], ..Default::default() };
        let m = &svc.workers[0];
        assert_eq!(svc.stalled(at(3_500)), vec![("1".to_string(), Duration::from_millis(2_500))]);
        let mut e = Exposition::new();
        m.collect(&mut e);
        let t = e.render();
        assert!(t.contains("xdpos_worker_stalled{worker=\"1\"} "), "{t}");
        // It beats again: resumed.
        m.beat(at(3_600));
        assert!(svc.stalled(at(3_700)).is_empty());
        // Its loop ended: /healthz's business, not a stall.
        m.beat_stopped();
        assert_eq!(m.heartbeat(at(100_000)), Heartbeat::Stopped);
        assert!(svc.stalled(at(100_000)).is_empty());
        // The epoch itself is a beat (cell value 1), not "never".
        m.beat(at(0));
        assert_eq!(m.heartbeat(at(0)), Heartbeat::Age(Duration::ZERO));
    }

    #[test]
    fn published_values_come_out_under_their_names() {
        let m = WorkerMetrics::new(0, "echo", &[("eth0", 2)], &["eth0"], Forwarding::None);
        m.set_cpu(Some(1));
        let ps = PortStats { rx_packets: 10, tx_ring_full: 2, tx_csum_sw: 7, ..Default::default() };
        m.publish_port(0, &ps);
        let mut s = Stats::default();
        s.drops[DropReason::NoSocket as usize] = 4;
        s.udp_rx_datagrams = 9;
        let mut t = TcpStats::default();
        t.states[TcpState::Established as usize] = 5;
        t.retransmits = 6;
        m.publish_stack(0, &s, &t);
        m.publish_loop(100, 3, 1, 0);
        m.batch(2000, 1);
        m.rx_batch(0, 10);
        m.publish_umem(&FrameCounts { total: 64, free: 60, fill: 4, ..Default::default() });
        let mut e = Exposition::new();
        m.collect(&mut e);
        let t = e.render();
        let l = "worker=\"0\",interface=\"eth0\"";
        for needle in [
            "xdpos_worker_info{worker=\"0\",role=\"echo\",cpu=\"1\"} 1\n".to_string(),
            format!("xdpos_rx_packets_total{{{l},queue=\"2\"}} 10\n"),
            format!("xdpos_tx_ring_full_total{{{l},queue=\"2\"}} 2\n"),
            format!("xdpos_tx_checksum_software_total{{{l},queue=\"2\"}} 7\n"),
            format!("xdpos_stack_drops_total{{{l},reason=\"no_socket\"}} 4\n"),
            format!("xdpos_udp_errors_total{{{l},reason=\"no_socket\"}} 4\n"),
            format!("xdpos_udp_rx_datagrams_total{{{l}}} 9\n"),
            format!("xdpos_tcp_connections{{{l},state=\"established\"}} 5\n"),
            format!("xdpos_tcp_retransmitted_segments_total{{{l}}} 6\n"),
            format!("xdpos_rx_batch_frames_bucket{{{l},queue=\"2\",le=\"16\"}} 1\n"),
            "xdpos_worker_poll_iterations_total{worker=\"0\"} 100\n".to_string(),
            "xdpos_worker_busy_seconds_total{worker=\"0\"} 0.000002\n".to_string(),
            "xdpos_worker_drops_total{worker=\"0\",reason=\"tx_backlog_full\"} 1\n".to_string(),
            format!(
                "xdpos_batch_duration_seconds_bucket{{{l},queue=\"2\",le=\"0.000002048\"}} 1\n"
            ),
            "xdpos_umem_frames{worker=\"0\",state=\"free\"} 60\n".to_string(),
            "xdpos_umem_size_frames{worker=\"0\"} 64\n".to_string(),
        ] {
            assert!(t.contains(&needle), "missing {needle:?} in\n{t}");
        }
        assert!(!t.contains("xdpos_forward"), "no forwarding families for an echo worker");
    }
}
