//! # The worker: a libos stack over one NIC queue, run to completion
//!
//! What it is: the glue between `nic` and `libos` (libos never depends on nic; STYLE.md):
//! - [`PortBatch`] implements libos's [`RxBatch`] over a received [`Burst`]: frame `i` *is* the
//!   port's memory of descriptor `i` (the UMEM bytes for AF_XDP), so the stack parses and
//!   rewrites replies in place without a copy, and its verdicts land in a fixed array;
//! - [`PortSlots`] implements [`TxSlots`] over frames from [`Port::alloc_burst`]: the stack
//!   writes the frames it originates (ARP, ICMP errors, socket sends, generator traffic)
//!   straight into the port's memory;
//! - [`Worker`]: one per queue, owning its port, its [`Stack`] and the socket owner ([`App`]),
//!   pinned by whoever spawns its thread.
//!
//! One iteration of [`Worker::run`] (DESIGN.md §1), one batch:
//! 1. `rx_burst` (after driving the port's busy polling, if configured);
//! 2. if anything arrived or waits to be sent, read the clock once: every stack call of the
//!    iteration gets the same `now`; otherwise the iteration ends here (an empty poll), and
//!    every [`CHECK_EVERY`] empty polls the rest runs anyway for the timers and the app;
//! 3. apply the neighbour facts sibling workers learned ([`Siblings`]);
//! 4. [`Stack::handle_rx`] → apply each verdict: `Transmit` puts the *same* descriptor, with
//!    the verdict's length and offload header, on the TX burst; `Deliver` hands the frame to
//!    [`App::deliver`] and frees it; `Consumed` and `Drop` free it;
//! 5. [`Stack::handle_timeout`] once [`Stack::poll_timeout`] has passed;
//! 6. [`App::poll`]: socket owners receive and send between batches;
//! 7. pass what ARP taught the stack to the siblings;
//! 8. [`Stack::poll_tx`] into frames from `alloc_burst`, offered only the room the TX burst has
//!    left (so a generator slows down to what the ring takes: back-pressure, not loss);
//! 9. one `tx_burst` for replies and originated frames together: one kick per batch.
//!
//! Idle: after finding its port empty for [`WorkerConfig::spin`] (timed, not counted: a count
//! of empty polls is over in microseconds, shorter than the gaps between the bursts of a sender
//! running at a million packets per second, and a worker asleep in `poll(2)` makes the kernel
//! pay a wake-up on the *sender's* CPU for every burst) the worker sleeps on the port
//! ([`WorkerPort::idle_wait`], `poll(2)` on the AF_XDP socket, woken by traffic) for at most
//! [`WorkerConfig::idle_wait`], and never past the stack's next timer, then counts the sleep.
//! A worker with something to send (a generator, a TX backlog) never sleeps. Placement knobs for
//! a worker that shares its core with the device's receive work: [`WorkerConfig::busy_poll`],
//! [`WorkerConfig::yield_when_empty`], [`WorkerConfig::yield_when_busy`],
//! [`WorkerConfig::empty_pause`] (all off by default; docs/udp.md has what they did on veth).
//!
//! Transmit back-pressure: frames the TX ring cannot take stay in the TX burst and go first on
//! the next iteration; beyond one burst of backlog the newest are freed and counted
//! ([`WorkerReport::tx_full_drops`]), so held frames never starve the fill ring.
//!
//! Checksums ([`TxCsum`]): the stack is told whether the device completes `Csum::Partial` for
//! free ([`Caps::tx_csum`]). The AF_XDP port does not: it completes partial checksums in
//! software just before the ring, summing the whole datagram. The stack computing them itself
//! is never more work and often much less (an echo keeps the received checksum, the generator
//! updates its template's checksum incrementally), so [`TxCsum::Auto`] lets the stack emit
//! `Partial` only when the device really offloads it. docs/udp.md has the measurement.
//!
//! What it never does on the fast path: allocate (every burst and the verdict array are fixed
//! arrays owned by the worker), lock, log, read the clock or make a system call per packet (one
//! `rx_burst`, at most one `tx_burst` kick and one clock read per busy iteration, two with
//! [`WorkerConfig::metrics`]; counters are published with relaxed stores every few busy
//! iterations).
//!
//! Metrics ([`crate::metrics`], DESIGN.md §6): with [`WorkerConfig::metrics`] on (the default)
//! each busy batch updates the worker's [`WorkerMetrics`] block with relaxed load+store: the
//! receive and transmit batch sizes, and the batch's processing time and busy time (a second
//! clock read at the end of the batch); every few busy iterations and before a sleep the
//! worker's plain counters (port, stack, TCP) are stored into the block for the collector.
//! Packet capture ([`crate::capture`]) costs one relaxed load and one branch per received
//! batch while no capture runs.
//!
//! Heartbeat ([`WorkerMetrics::beat`], always on, whatever [`WorkerConfig::metrics`] says):
//! one relaxed store of the time when the loop starts, at each idle visit (every
//! [`CHECK_EVERY`] empty polls), every few busy batches, and before a sleep (then the time the
//! sleep ends: a sleeping worker is not late); [`WorkerMetrics::beat_stopped`] when the loop
//! ends. The control side reports a worker that goes [`crate::metrics::STALL_AFTER`] without
//! one as stalled (`xdpos_worker_stalled`, `/readyz`). [`TEST_STALL_ENV`] is a test hook that
//! stalls a worker on purpose.
//!
//! Shutdown: when stopped, the worker frees every frame it holds, drains what still arrives
//! (counted in [`WorkerReport::drained`]), waits (bounded) for the device to finish its
//! transmissions and checks the frame accounting ([`WorkerPort::check_frames`]) once the port is
//! quiet; the result is in its [`WorkerReport`]. The accounting check reads rings the kernel
//! is writing, so an owner that can stop the inflow first (the steering program's
//! `steer_none`) should, and then call [`Worker::finish`] after [`Worker::run_loop`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

use std::sync::Arc;

use libos::batch::{Delivery, RxBatch, TxSlots, Verdict};
use libos::wire::NetHdr;
use libos::{Instant, NeighborHint, Stack, Stats};
use nic::afxdp::XskPort;
use nic::mem::MemPort;
use nic::{Burst, Caps, Desc, FrameCounts, Port, PortStats, DEFAULT_BURST, MAX_BURST};

use crate::capture::CaptureSlot;
use crate::metrics::live::SLOW_EVERY;
use crate::metrics::WorkerMetrics;

/// A port a worker can run on: a [`Port`] that can also sleep until traffic arrives and check
/// its frame accounting.
pub trait WorkerPort: Port {
    /// Sleeps until frames arrive or `max` has passed (a spurious early return is fine).
    fn idle_wait(&mut self, max: Duration);
    /// Runs the device's receive work in this thread, once (preferred busy polling, see
    /// [`WorkerConfig::busy_poll`]); does nothing where the backend has no such thing.
    fn busy_poll(&mut self) {}
    /// Checks the frame accounting (as deeply as the backend can); `Err` says what is wrong.
    fn check_frames(&self) -> Result<FrameCounts, String>;
    /// Index of the socket a received descriptor arrived on, among the port's sockets (0 for
    /// a port of one socket; a queue set's queue, see `daemon::queues`): what packet capture
    /// selects frames by.
    #[inline(always)]
    fn rx_socket(&self, _desc: &nic::Desc) -> usize {
        0
    }
}

impl WorkerPort for XskPort {
    fn idle_wait(&mut self, max: Duration) {
        let ms = i32::try_from(max.as_millis()).unwrap_or(i32::MAX);
        // An error here (EINTR) only ends the sleep early.
        let _ = self.wait_rx(ms);
    }

    #[inline]
    fn busy_poll(&mut self) {
        // A non-blocking zero-length receive runs the socket's NAPI poll once (the socket has
        // SO_BUSY_POLL set, see nic::busy_poll); EAGAIN is the normal answer.
        let _ = rustix::net::recv(self.fd(), &mut [0u8; 0][..], rustix::net::RecvFlags::DONTWAIT);
    }

    fn check_frames(&self) -> Result<FrameCounts, String> {
        self.audit().map_err(|e| e.to_string())
    }
}

impl WorkerPort for MemPort {
    fn idle_wait(&mut self, max: Duration) {
        // No file descriptor to wait on: a short sleep (tests only).
        std::thread::sleep(max.min(Duration::from_millis(1)));
    }

    fn check_frames(&self) -> Result<FrameCounts, String> {
        let c = self.frame_counts();
        c.check().map(|()| c).map_err(|e| e.to_string())
    }
}

/// Who computes transmit checksums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TxCsum {
    /// `Partial` where the port's device completes checksums ([`Caps::tx_csum`]), the stack
    /// otherwise.
    #[default]
    Auto,
    /// The stack always computes complete checksums.
    Stack,
    /// The stack emits `Csum::Partial` and the port completes it (in software on AF_XDP).
    Partial,
}

impl TxCsum {
    /// What to tell the stack (`StackConfig::tx_csum_offload`) for a port with `caps`.
    pub fn offload(self, caps: &Caps) -> bool {
        match self {
            TxCsum::Auto => caps.tx_csum,
            TxCsum::Stack => false,
            TxCsum::Partial => true,
        }
    }
}

impl std::str::FromStr for TxCsum {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<TxCsum> {
        match s {
            "auto" => Ok(TxCsum::Auto),
            "stack" => Ok(TxCsum::Stack),
            "partial" => Ok(TxCsum::Partial),
            _ => anyhow::bail!("unknown checksum policy {s:?} (auto, stack, partial)"),
        }
    }
}

/// How a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Frames per batch: the most the stack may originate per iteration, and the TX backlog
    /// kept when the ring is full (1..=[`MAX_BURST`]; the port's own receive burst applies to
    /// `rx_burst`).
    pub burst: usize,
    /// How long the worker polls an empty port before it sleeps on it.
    pub spin: Duration,
    /// Yield the CPU (`sched_yield`) after every empty poll while spinning: for a worker that
    /// shares its core with the device's receive work (a NAPI kthread pinned there), which
    /// then runs as soon as it has work instead of waiting for the scheduler to preempt a
    /// spinning worker.
    pub yield_when_empty: bool,
    /// Yield the CPU after every busy iteration: for a sender that shares its core with the
    /// receive work its transmissions raise (a NAPI kthread pinned there), which then processes
    /// the whole burst at once instead of waiting for the scheduler.
    pub yield_when_busy: bool,
    /// CPU pause hints (`spin_loop`) after an empty poll: polling the rings in a tight loop
    /// pulls their cache lines away from the core that is filling them.
    pub empty_pause: u32,
    /// Longest sleep of an idle worker (traffic wakes it at once; it also never sleeps past
    /// the stack's next timer). Bounds how late it sees a stop request.
    pub idle_wait: Duration,
    /// Drive the port's busy polling once per iteration ([`WorkerPort::busy_poll`]): for an
    /// AF_XDP socket with `nic::busy_poll` enabled, the device's receive work (the XDP
    /// program, the copy into the socket) then runs in the worker, on its core, instead of in
    /// a softirq on whichever core raised it. One system call per iteration, not per packet.
    pub busy_poll: bool,
    /// Update the worker's metrics block ([`Worker::metrics`]): batch histograms and busy time
    /// per busy batch (one more clock read), counter snapshots every few batches. Off, the
    /// block stays at zero and only [`WorkerCounters`] are published (to measure what the
    /// metrics cost: `xdpos bench udp --metrics off`).
    pub metrics: bool,
}

impl Default for WorkerConfig {
    fn default() -> WorkerConfig {
        WorkerConfig {
            burst: DEFAULT_BURST,
            spin: Duration::from_millis(1),
            yield_when_empty: false,
            yield_when_busy: false,
            empty_pause: 0,
            idle_wait: Duration::from_millis(50),
            busy_poll: false,
            metrics: true,
        }
    }
}

/// The worker's clock: a monotonic clock read once per iteration and turned into the stack's
/// [`Instant`] (nanoseconds since the clock's epoch). Copies share the epoch, so the workers of
/// one service agree on time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Clock {
        Clock { epoch: std::time::Instant::now() }
    }

    /// The stack's time at the monotonic instant `t`.
    #[inline]
    pub fn at(&self, t: std::time::Instant) -> Instant {
        let nanos = t.saturating_duration_since(self.epoch).as_nanos();
        Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The stack's time now (one clock read).
    pub fn now(&self) -> Instant {
        self.at(std::time::Instant::now())
    }

    /// The wall-clock time of the clock's zero (to turn its instants into dates: capture).
    pub fn wall_epoch(&self) -> std::time::SystemTime {
        std::time::SystemTime::now() - self.epoch.elapsed()
    }
}

/// The code that owns the worker's sockets: it receives `Deliver`-mode datagrams and may
/// receive and send on any socket between batches. Both methods default to doing nothing, so
/// `()` is the app of a worker whose sockets serve themselves (echo, sink, generator).
pub trait App {
    /// A datagram for a `Deliver`-mode socket: `frame` is the received frame (the payload is
    /// `frame[d.offset..][..d.len]`), freed when this returns. Called from the fast path: no
    /// allocation, lock or system call per datagram.
    fn deliver(&mut self, now: Instant, stack: &mut Stack, d: &Delivery, frame: &[u8]) {
        let _ = (now, stack, d, frame);
    }

    /// Called after every received batch (after the timers, before the stack fills the TX
    /// burst), and when idle every [`CHECK_EVERY`] empty polls and at least every
    /// [`WorkerConfig::idle_wait`]: drain `Queue`-mode sockets, `udp_send`, attach generators.
    fn poll(&mut self, now: Instant, stack: &mut Stack) {
        let _ = (now, stack);
    }
}

impl App for () {}

/// Neighbour facts shared between the workers of one interface's queues (one [`Siblings`]
/// per worker, from [`siblings`]): an ARP reply lands on whichever queue the device picks, and
/// every per-queue stack answers for the same addresses, so each one passes what it learns to
/// the others ([`Stack::poll_neighbor_learned`], [`Stack::handle_neighbor_hint`]). Bounded
/// channels: a full inbox drops the hint (the sibling then resolves by itself).
#[derive(Debug)]
pub struct Siblings {
    inbox: Receiver<NeighborHint>,
    peers: Vec<SyncSender<NeighborHint>>,
    dropped: u64,
}

/// Hints an inbox holds.
const HINT_QUEUE: usize = 64;

/// Empty polls between two visits of the clock, the timers and the app by an idle worker.
pub const CHECK_EVERY: u32 = 64;
/// Busy iterations between two publications of the counters.
const PUBLISH_EVERY: u32 = 8;

/// Test hook: `XDPOS_TEST_STALL_WORKER=W:AFTER_MS:FOR_MS` makes worker `W`'s loop (the server
/// and echo worker; not the forwarding one) sleep `FOR_MS` milliseconds (at most
/// [`TEST_STALL_MAX`]) once, `AFTER_MS` after its loop starts, so the integration tests can
/// check that a stalled worker is reported (`xdpos_worker_stalled`, `/readyz`). Read once per
/// worker when its loop first starts; inert when unset; a value that does not parse is
/// ignored with a warning. It logs a warning when armed and when it fires.
pub const TEST_STALL_ENV: &str = "XDPOS_TEST_STALL_WORKER";
/// The longest stall [`TEST_STALL_ENV`] asks for that is honoured (longer ones are clamped).
pub const TEST_STALL_MAX: Duration = Duration::from_secs(30);

/// A stall asked for by [`TEST_STALL_ENV`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestStall {
    /// From the start of the loop to the stall.
    pub after: Duration,
    /// How long the loop sleeps.
    pub stall: Duration,
}

impl TestStall {
    /// Parses `W:AFTER_MS:FOR_MS`; `Ok(None)` when it names another worker than `worker`.
    pub fn parse(v: &str, worker: &str) -> Result<Option<TestStall>, String> {
        let f: Vec<&str> = v.split(':').collect();
        let ms = |s: &str| s.trim().parse::<u64>().map(Duration::from_millis);
        match f[..] {
            [w, after, stall] => {
                let (Ok(after), Ok(stall)) = (ms(after), ms(stall)) else {
                    return Err(format!("{TEST_STALL_ENV}={v:?}: milliseconds expected"));
                };
                Ok((w.trim() == worker)
                    .then_some(TestStall { after, stall: stall.min(TEST_STALL_MAX) }))
            }
            _ => Err(format!("{TEST_STALL_ENV}={v:?}: WORKER:AFTER_MS:FOR_MS expected")),
        }
    }

    /// The stall [`TEST_STALL_ENV`] asks of `worker`, if any (a bad value is logged, ignored).
    fn from_env(worker: &str) -> Option<TestStall> {
        let v = std::env::var_os(TEST_STALL_ENV)?;
        match TestStall::parse(&v.to_string_lossy(), worker) {
            Ok(Some(t)) => {
                tracing::warn!(worker, ?t, "test hook {TEST_STALL_ENV} armed");
                Some(t)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("ignored: {e}");
                None
            }
        }
    }
}

/// Links `n` workers' [`Siblings`]: what one learns reaches every other.
pub fn siblings(n: usize) -> Vec<Siblings> {
    let (txs, rxs): (Vec<_>, Vec<_>) =
        (0..n).map(|_| std::sync::mpsc::sync_channel(HINT_QUEUE)).unzip();
    rxs.into_iter()
        .enumerate()
        .map(|(i, inbox)| Siblings {
            inbox,
            peers: txs
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, t)| t.clone())
                .collect(),
            dropped: 0,
        })
        .collect()
}

/// [`RxBatch`] over the descriptors of a received burst: zero copy, frame `i` is the port's
/// memory of `descs[i]`.
#[derive(Debug)]
pub struct PortBatch<'a, P: Port> {
    port: &'a mut P,
    descs: &'a [Desc],
    verdicts: &'a mut [Verdict],
}

impl<'a, P: Port> PortBatch<'a, P> {
    /// The batch of `descs` (held frames of `port`); verdicts go to `verdicts[i]`, which must be
    /// at least as long as `descs`.
    pub fn new(port: &'a mut P, descs: &'a [Desc], verdicts: &'a mut [Verdict]) -> Self {
        debug_assert!(verdicts.len() >= descs.len());
        PortBatch { port, descs, verdicts }
    }
}

impl<P: Port> RxBatch for PortBatch<'_, P> {
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

    #[inline]
    fn set_verdict(&mut self, i: usize, verdict: Verdict) {
        if let Some(v) = self.verdicts.get_mut(i) {
            *v = verdict;
        }
    }
}

/// [`TxSlots`] over free frames of a port (from `alloc_burst`), filled front to back: the
/// stack writes each frame in the port's memory, `commit` sets the descriptor's length and
/// offload header. `used()` frames are ready for `tx_burst`.
#[derive(Debug)]
pub struct PortSlots<'a, P: Port> {
    port: &'a mut P,
    descs: &'a mut [Desc],
    used: usize,
}

impl<'a, P: Port> PortSlots<'a, P> {
    /// Lends the frames of `descs` (held by `port`) as free slots.
    pub fn new(port: &'a mut P, descs: &'a mut [Desc]) -> Self {
        PortSlots { port, descs, used: 0 }
    }

    /// Slots committed so far (`descs[..used]`).
    pub fn used(&self) -> usize {
        self.used
    }
}

impl<P: Port> TxSlots for PortSlots<'_, P> {
    #[inline]
    fn remaining(&self) -> usize {
        self.descs.len() - self.used
    }

    #[inline]
    fn room(&mut self) -> Option<&mut [u8]> {
        let d = self.descs.get(self.used)?;
        Some(self.port.room_mut(d))
    }

    #[inline]
    fn commit(&mut self, len: usize, hdr: NetHdr) {
        if let Some(d) = self.descs.get_mut(self.used) {
            d.len = len as u32;
            d.hdr = hdr;
            self.used += 1;
        }
    }
}

/// Live counters of one worker, written by the worker only (relaxed stores once per busy
/// iteration, DESIGN.md §6) and read by anyone.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    /// Frames received.
    pub rx: AtomicU64,
    /// Frames queued for transmit.
    pub tx: AtomicU64,
    /// Frames answered in place (ARP replies, ICMP echo replies, UDP echoes).
    pub replies: AtomicU64,
    /// UDP datagrams delivered to sockets.
    pub udp_rx: AtomicU64,
    /// UDP datagrams sent by `poll_tx` (socket sends, echoes of reassembled datagrams,
    /// generators).
    pub udp_tx: AtomicU64,
    /// Frames dropped: by the stack (every reason) and for want of TX ring room.
    pub dropped: AtomicU64,
    /// Sleeps while idle.
    pub sleeps: AtomicU64,
}

/// What a worker did, when it stops.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    /// The port's counters.
    pub port: PortStats,
    /// The stack's counters.
    pub stack: Stats,
    /// Frame accounting after the drain.
    pub frames: Result<FrameCounts, String>,
    /// Loop iterations.
    pub iterations: u64,
    /// Sleeps while idle.
    pub sleeps: u64,
    /// Frames freed because the TX ring stayed full beyond one burst of backlog.
    pub tx_full_drops: u64,
    /// Neighbour hints lost to a full sibling inbox.
    pub hints_dropped: u64,
    /// Frames that arrived after the stop and were freed unprocessed.
    pub drained: u64,
}

impl WorkerReport {
    /// Frames dropped by the stack, for want of TX room, or at the stop.
    pub fn dropped(&self) -> u64 {
        self.stack.total_drops() + self.tx_full_drops + self.drained
    }
}

/// One queue's worker (see the module documentation).
#[derive(Debug)]
pub struct Worker<P: WorkerPort, A: App = ()> {
    port: P,
    stack: Stack,
    app: A,
    cfg: WorkerConfig,
    clock: Clock,
    siblings: Option<Siblings>,
    rx: Burst,
    /// Frames to send: in-place replies, then originated frames, then (after a full ring) the
    /// backlog, which goes first next time.
    tx: Burst,
    /// Frames allocated for `poll_tx` and not used yet (kept for the next iteration).
    spare: Burst,
    verdicts: [Verdict; MAX_BURST],
    counters: std::sync::Arc<WorkerCounters>,
    metrics: Arc<WorkerMetrics>,
    /// Packet capture (`xdpos capture`): one load and one branch per received batch when off.
    capture: Arc<CaptureSlot>,
    /// Publications so far (the costly gauges are refreshed every [`SLOW_EVERY`]).
    publications: u32,
    iterations: u64,
    sleeps: u64,
    tx_full_drops: u64,
    /// Since when the port has been found empty (`None`: it was not, last time).
    idle_since: Option<std::time::Instant>,
    /// [`TEST_STALL_ENV`]: `None` until the loop first starts, then when to stall and for how
    /// long (`Some(None)`: never, or done).
    test_stall: Option<Option<(std::time::Instant, Duration)>>,
}

impl<P: WorkerPort, A: App> Worker<P, A> {
    /// A worker over `port` running `stack` (built with the port's checksum capability, see
    /// [`TxCsum::offload`]) and `app`, on `clock`'s time.
    pub fn new(port: P, stack: Stack, app: A, cfg: WorkerConfig, clock: Clock) -> Self {
        let burst = cfg.burst.clamp(1, MAX_BURST);
        Worker {
            port,
            stack,
            app,
            cfg: WorkerConfig { burst, ..cfg },
            clock,
            siblings: None,
            rx: Burst::new(),
            tx: Burst::new(),
            spare: Burst::new(),
            verdicts: [Verdict::default(); MAX_BURST],
            counters: Default::default(),
            metrics: WorkerMetrics::single("worker"),
            capture: Arc::default(),
            publications: 0,
            iterations: 0,
            sleeps: 0,
            tx_full_drops: 0,
            idle_since: None,
            test_stall: None,
        }
    }

    /// Writes metrics into `m` (built with the worker's labels: one port, one stack) instead
    /// of an unlabelled block of its own.
    pub fn with_metrics(mut self, m: Arc<WorkerMetrics>) -> Self {
        self.metrics = m;
        self
    }

    /// Captures received frames into `slot` while it is armed ([`crate::capture`]).
    pub fn with_capture(mut self, slot: Arc<CaptureSlot>) -> Self {
        self.capture = slot;
        self
    }

    /// The metrics block (clone the `Arc` for the collector).
    pub fn metrics(&self) -> &Arc<WorkerMetrics> {
        &self.metrics
    }

    /// Shares neighbour facts with the other workers of the interface.
    pub fn with_siblings(mut self, s: Siblings) -> Self {
        self.siblings = Some(s);
        self
    }

    /// The live counters (clone the `Arc` to read them from another thread).
    pub fn counters(&self) -> &std::sync::Arc<WorkerCounters> {
        &self.counters
    }

    /// The stack.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// The stack, to change between iterations (bind sockets, routes).
    pub fn stack_mut(&mut self) -> &mut Stack {
        &mut self.stack
    }

    /// The app.
    pub fn app(&self) -> &A {
        &self.app
    }

    /// The app, mutably.
    pub fn app_mut(&mut self) -> &mut A {
        &mut self.app
    }

    /// The port.
    pub fn port(&self) -> &P {
        &self.port
    }

    /// The clock.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Takes the worker apart (after [`run`](Self::run)).
    pub fn into_parts(self) -> (P, Stack, A) {
        (self.port, self.stack, self.app)
    }

    /// One iteration at `now` (steps 2 to 8 of the module documentation). Returns whether
    /// anything moved (frames received, sent or originated).
    pub fn poll_once(&mut self, now: Instant) -> bool {
        if self.cfg.busy_poll {
            self.port.busy_poll();
        }
        let received = self.port.rx_burst(&mut self.rx);
        self.step(now, received)
    }

    /// Everything of an iteration after `rx_burst` put `received` frames in `self.rx`.
    #[inline]
    fn step(&mut self, now: Instant, received: usize) -> bool {
        if let Some(s) = &self.siblings {
            while let Ok(hint) = s.inbox.try_recv() {
                self.stack.handle_neighbor_hint(now, hint);
            }
        }
        if received > 0 {
            if self.cfg.metrics {
                self.metrics.rx_batch(0, received);
            }
            if self.capture.armed() {
                let port = &self.port;
                let frames = self.rx.iter().map(|d| (port.rx_socket(d), port.frame(d)));
                self.capture.offer(now.as_nanos(), frames);
            }
            self.receive(now);
        }
        if self.stack.poll_timeout().is_some_and(|t| t <= now) {
            self.stack.handle_timeout(now);
        }
        self.app.poll(now, &mut self.stack);
        if let Some(s) = &mut self.siblings {
            while let Some(hint) = self.stack.poll_neighbor_learned() {
                for p in &s.peers {
                    if let Err(TrySendError::Full(_)) = p.try_send(hint) {
                        s.dropped += 1;
                    }
                }
            }
        }
        let made = if self.stack.wants_tx() { self.originate(now) } else { 0 };
        let sent = self.flush();
        received > 0 || made > 0 || sent > 0
    }

    /// Hands the received burst to the stack and applies the verdicts.
    #[inline]
    fn receive(&mut self, now: Instant) {
        let n = self.rx.len();
        {
            let mut batch =
                PortBatch::new(&mut self.port, self.rx.as_slice(), &mut self.verdicts[..n]);
            self.stack.handle_rx(now, &mut batch);
        }
        for i in 0..n {
            let mut d = self.rx.as_slice()[i];
            match self.verdicts[i] {
                Verdict::Transmit { len, hdr } => {
                    d.len = len as u32;
                    d.hdr = hdr;
                    if !self.tx.push(d) {
                        self.tx_full_drops += 1;
                        self.port.free(&d);
                    }
                }
                Verdict::Deliver(del) => {
                    self.app.deliver(now, &mut self.stack, &del, self.port.frame(&d));
                    self.port.free(&d);
                }
                Verdict::Consumed | Verdict::Drop(_) => self.port.free(&d),
            }
        }
        self.rx.clear();
    }

    /// Lets the stack write what it originates into free frames, as many as the TX burst has
    /// room for. Returns how many it wrote.
    fn originate(&mut self, now: Instant) -> usize {
        let room = self.cfg.burst.saturating_sub(self.tx.len());
        if room == 0 {
            return 0;
        }
        if self.spare.len() < room {
            let missing = room - self.spare.len();
            if self.port.alloc_burst(&mut self.spare, missing) < missing {
                self.port.reclaim();
                let missing = room.saturating_sub(self.spare.len());
                self.port.alloc_burst(&mut self.spare, missing);
            }
        }
        let limit = room.min(self.spare.len());
        if limit == 0 {
            return 0;
        }
        let made = {
            let mut slots = PortSlots::new(&mut self.port, &mut self.spare.as_mut_slice()[..limit]);
            self.stack.poll_tx(now, &mut slots);
            slots.used()
        };
        for i in 0..made {
            // Cannot fail: tx.len() + made <= burst <= MAX_BURST.
            self.tx.push(self.spare.as_slice()[i]);
        }
        self.spare.consume_front(made);
        made
    }

    /// One `tx_burst` (a second after reclaiming if the ring was full); keeps at most one burst
    /// of backlog. Returns how many frames were queued.
    fn flush(&mut self) -> usize {
        if self.tx.is_empty() {
            return 0;
        }
        let mut sent = self.port.tx_burst(&mut self.tx);
        if !self.tx.is_empty() {
            self.port.reclaim();
            sent += self.port.tx_burst(&mut self.tx);
        }
        let keep = self.cfg.burst;
        if self.tx.len() > keep {
            for i in keep..self.tx.len() {
                let d = self.tx.as_slice()[i];
                self.port.free(&d);
            }
            self.tx_full_drops += (self.tx.len() - keep) as u64;
            let mut k = 0;
            self.tx.retain(|_| {
                k += 1;
                k <= keep
            });
        }
        if sent > 0 && self.cfg.metrics {
            self.metrics.tx_batch(0, sent);
        }
        sent
    }

    /// Publishes the counters (relaxed stores; single writer).
    fn publish(&mut self) {
        if self.cfg.metrics {
            self.publish_metrics();
        }
        let (p, s, c) = (self.port.stats(), self.stack.stats(), &self.counters);
        c.rx.store(p.rx_packets, Ordering::Relaxed);
        c.tx.store(p.tx_packets, Ordering::Relaxed);
        c.replies.store(s.tx_in_place, Ordering::Relaxed);
        c.udp_rx.store(s.udp_rx_datagrams, Ordering::Relaxed);
        c.udp_tx.store(s.udp_tx_datagrams, Ordering::Relaxed);
        c.dropped.store(s.total_drops() + self.tx_full_drops, Ordering::Relaxed);
        c.sleeps.store(self.sleeps, Ordering::Relaxed);
    }

    /// Stores the plain counters into the metrics block; every [`SLOW_EVERY`] publications
    /// (and the first) also the gauges that cost a scan.
    fn publish_metrics(&mut self) {
        let m = &self.metrics;
        let hints = self.siblings.as_ref().map_or(0, |s| s.dropped);
        m.publish_loop(self.iterations, self.sleeps, self.tx_full_drops, hints);
        m.publish_port(0, &self.port.stats());
        m.publish_stack(0, self.stack.stats(), self.stack.tcp().stats());
        if self.publications % SLOW_EVERY == 0 {
            let n = self.stack.neighbors();
            m.publish_arp(0, n.iter().count(), n.queued());
            m.publish_umem(&self.port.frame_counts());
        }
        self.publications = self.publications.wrapping_add(1);
    }

    /// [`run_loop`](Self::run_loop), then [`finish`](Self::finish).
    pub fn run(&mut self, stop: &AtomicBool, until: Option<std::time::Instant>) -> WorkerReport {
        self.run_loop(stop, until);
        self.finish()
    }

    /// Runs iterations until `stop` is raised or `until` passes (see the module
    /// documentation). Frames stay held; call [`finish`](Self::finish) afterwards.
    ///
    /// An empty poll (nothing received, nothing to send) costs only the `rx_burst` and a
    /// look at the stack's transmit queues: the clock, the timers, the app and the idle logic
    /// are visited once every [`CHECK_EVERY`] empty polls (a few microseconds). At several
    /// million packets per second batches are small and empty polls frequent, so what an
    /// iteration costs beyond its frames is a per-packet cost in disguise.
    pub fn run_loop(&mut self, stop: &AtomicBool, until: Option<std::time::Instant>) {
        let mut empties = 0u32;
        let mut busy = 0u32;
        let t0 = std::time::Instant::now();
        self.metrics.beat(t0);
        if self.test_stall.is_none() {
            let s = TestStall::from_env(self.metrics.worker());
            self.test_stall = Some(s.map(|s| (t0 + s.after, s.stall)));
        }
        while !stop.load(Ordering::Relaxed) {
            self.iterations += 1;
            if self.cfg.busy_poll {
                self.port.busy_poll();
            }
            let received = self.port.rx_burst(&mut self.rx);
            if received == 0 && self.tx.is_empty() && !self.stack.wants_tx() {
                if self.cfg.yield_when_empty {
                    std::thread::yield_now();
                }
                for _ in 0..self.cfg.empty_pause {
                    core::hint::spin_loop();
                }
                empties += 1;
                if empties % CHECK_EVERY == 0 && self.idle_check(until) {
                    break;
                }
                continue;
            }
            let t = std::time::Instant::now();
            if until.is_some_and(|u| t >= u) {
                break;
            }
            self.step(self.clock.at(t), received);
            if self.cfg.metrics {
                // One port: every busy batch is its queue's.
                self.metrics.batch(t.elapsed().as_nanos() as u64, 1);
            }
            self.idle_since = None;
            empties = 0;
            busy += 1;
            if busy % PUBLISH_EVERY == 0 {
                self.metrics.beat(t);
                self.test_stall(t);
                self.publish();
            }
            if self.cfg.yield_when_busy {
                std::thread::yield_now();
            }
        }
        self.publish();
        self.metrics.beat_stopped();
    }

    /// [`TEST_STALL_ENV`]: sleeps once, when asked to and the time has come.
    fn test_stall(&mut self, t: std::time::Instant) {
        if let Some(Some((at, stall))) = self.test_stall {
            if t >= at {
                self.test_stall = Some(None);
                let ms = stall.as_millis() as u64;
                tracing::warn!(worker = self.metrics.worker(), ms, "test hook: stalling the loop");
                std::thread::sleep(stall);
            }
        }
    }

    /// The periodic visit of an idle loop: the clock, the deadline (returns `true` when it has
    /// passed), timers and the app (through a full iteration), and the decision to sleep.
    fn idle_check(&mut self, until: Option<std::time::Instant>) -> bool {
        let t = std::time::Instant::now();
        if until.is_some_and(|u| t >= u) {
            return true;
        }
        self.metrics.beat(t);
        self.test_stall(t);
        let now = self.clock.at(t);
        if self.step(now, 0) {
            self.idle_since = None;
            self.publish();
            return false;
        }
        self.port.reclaim();
        let since = *self.idle_since.get_or_insert(t);
        if t.saturating_duration_since(since) < self.cfg.spin
            || !self.tx.is_empty()
            || self.stack.wants_tx()
        {
            return false;
        }
        self.idle_since = None;
        let mut wait = self.cfg.idle_wait;
        if let Some(timer) = self.stack.poll_timeout() {
            wait = wait.min(timer.saturating_duration_since(now));
        }
        if let Some(u) = until {
            wait = wait.min(u.saturating_duration_since(t));
        }
        if wait >= Duration::from_millis(1) {
            self.sleeps += 1;
            self.publish();
            // Alive until the sleep ends: a sleep is not a stall, an oversleep would be.
            self.metrics.beat(t + wait);
            self.port.idle_wait(wait);
        }
        false
    }

    /// Frees every held frame, drains what still arrives, waits (at most 500 ms) for the device
    /// to hand back what it is sending, and checks the accounting once the port is quiet (a
    /// check that races with the kernel moving frames is retried until the deadline).
    pub fn finish(&mut self) -> WorkerReport {
        self.port.free_burst(&mut self.rx);
        self.port.free_burst(&mut self.tx);
        self.port.free_burst(&mut self.spare);
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        let mut drained = 0u64;
        let frames = loop {
            while self.port.rx_burst(&mut self.rx) > 0 {
                drained += self.rx.len() as u64;
                self.port.free_burst(&mut self.rx);
            }
            self.port.reclaim();
            let c = self.port.frame_counts();
            let quiet = c.tx == 0 && c.kernel == 0 && c.completion == 0 && c.rx == 0;
            let late = std::time::Instant::now() >= deadline;
            if quiet || late {
                let check = self.port.check_frames();
                if check.is_ok() || late {
                    break check;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.publish();
        WorkerReport {
            port: self.port.stats(),
            stack: self.stack.stats().clone(),
            frames,
            iterations: self.iterations,
            sleeps: self.sleeps,
            tx_full_drops: self.tx_full_drops,
            hints_dropped: self.siblings.as_ref().map_or(0, |s| s.dropped),
            drained,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use libos::iface::route::Ipv4Cidr;
    use libos::sim::frames::{self, Kind};
    use libos::udp::{GeneratorConfig, UdpMode, UdpSocketConfig};
    use libos::wire::{ArpOperation, EthernetAddress, Icmpv4Message};
    use libos::StackConfig;
    use nic::mem::{pair, MemConfig};

    use super::*;

    const US: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xb]);
    const PEER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xa]);

    #[test]
    fn the_test_stall_hook_parses_its_variable_and_names_one_worker() {
        let t = TestStall { after: Duration::from_millis(1500), stall: Duration::from_secs(3) };
        assert_eq!(TestStall::parse("0:1500:3000", "0"), Ok(Some(t)));
        assert_eq!(TestStall::parse("0:1500:3000", "1"), Ok(None));
        let long = TestStall::parse("2:0:999999", "2").unwrap().unwrap();
        assert_eq!(long.stall, TEST_STALL_MAX, "clamped");
        assert!(TestStall::parse("0:1500", "0").is_err());
        assert!(TestStall::parse("0:soon:3000", "0").is_err());
        assert!(TestStall::parse("", "0").is_err());
    }

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, n)
    }

    fn sa(n: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(ip(n), port)
    }

    fn any(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)
    }

    /// A stack at 10.0.0.2/24 (no announcements) for a port with `caps`.
    fn stack(caps: &Caps, csum: TxCsum) -> Stack {
        let mut cfg = StackConfig::new(US, &[Ipv4Cidr::new(ip(2), 24)]);
        cfg.arp.announce_count = 0;
        cfg.tx_csum_offload = csum.offload(caps);
        Stack::new(cfg, Instant::ZERO).unwrap()
    }

    /// Sends raw frames from the peer port.
    fn send(peer: &mut MemPort, frames: &[Vec<u8>]) {
        let mut b = Burst::new();
        peer.reclaim();
        assert_eq!(peer.alloc_burst(&mut b, frames.len()), frames.len());
        for (d, f) in b.as_mut_slice().iter_mut().zip(frames) {
            d.len = f.len() as u32;
        }
        for (d, f) in b.iter().zip(frames) {
            peer.room_mut(d)[..f.len()].copy_from_slice(f);
        }
        assert_eq!(peer.tx_burst(&mut b), frames.len());
    }

    /// Everything the peer port has received.
    fn recv(peer: &mut MemPort) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut b = Burst::new();
        while peer.rx_burst(&mut b) > 0 {
            out.extend(b.iter().map(|d| peer.frame(d).to_vec()));
            peer.free_burst(&mut b);
        }
        out
    }

    fn worker(port: MemPort, stack: Stack) -> Worker<MemPort> {
        Worker::new(port, stack, (), WorkerConfig::default(), Clock::new())
    }

    #[test]
    fn echoes_arp_and_ping_are_answered_from_the_same_frames() {
        let (mut peer, port) = pair(MemConfig::default());
        let mut s = stack(&port.caps(), TxCsum::Auto);
        s.udp_bind(any(7), UdpSocketConfig::mode(UdpMode::Echo)).unwrap();
        let mut w = worker(port, s);
        let t = Instant::from_millis(1);
        send(
            &mut peer,
            &[
                frames::arp_request(PEER, ip(1), ip(2)),
                frames::icmp_echo_frame(PEER, US, ip(1), ip(2), 1, 1, b"ping"),
                frames::udp_frame(PEER, US, sa(1, 4000), sa(2, 7), &[7u8; 1000]),
                frames::udp_frame(PEER, US, sa(1, 4000), sa(2, 9), b"closed"),
            ],
        );
        assert!(w.poll_once(t));
        // The replies left from the frames they came in (the fourth got nothing in place).
        assert_eq!(w.port().stats().tx_packets, 4, "3 in place + 1 port unreachable");
        let kinds: Vec<Kind> = recv(&mut peer).iter().map(|f| frames::classify(f)).collect();
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert!(matches!(kinds[0], Kind::Arp { op: ArpOperation::Reply, .. }));
        assert!(matches!(kinds[1], Kind::Icmp { msg: Icmpv4Message::EchoReply, .. }));
        assert_eq!(kinds[2], Kind::Udp { src: sa(2, 7), dst: sa(1, 4000), len: 1000 });
        assert!(matches!(kinds[3], Kind::Icmp { msg: Icmpv4Message::DstUnreachable, code: 3, .. }));
        let r = w.finish();
        let frames = r.frames.unwrap();
        assert_eq!((frames.held, r.stack.tx_in_place), (0, 3));
    }

    #[test]
    fn originated_traffic_resolves_its_neighbour_first_and_accounting_holds() {
        let (mut peer, port) = pair(MemConfig::default());
        let caps = port.caps();
        let mut w = worker(port, stack(&caps, TxCsum::Auto));
        let h = w.stack_mut().udp_bind(any(5000), UdpSocketConfig::default()).unwrap();
        w.stack_mut().udp_send(h, sa(1, 6000), b"hello").unwrap();
        assert!(w.poll_once(Instant::ZERO));
        let out = recv(&mut peer);
        assert_eq!(out.len(), 1);
        assert!(matches!(frames::classify(&out[0]), Kind::Arp { op: ArpOperation::Request, .. }));
        send(&mut peer, &[frames::arp_reply(PEER, ip(1), US, ip(2))]);
        assert!(w.poll_once(Instant::from_millis(1)));
        let out = recv(&mut peer);
        assert_eq!(out.len(), 1);
        assert_eq!(
            frames::classify(&out[0]),
            Kind::Udp { src: sa(2, 5000), dst: sa(1, 6000), len: 5 }
        );
        let r = w.finish();
        assert!(r.frames.is_ok(), "{:?}", r.frames);
        assert_eq!(r.stack.arp_requests_sent, 1);
    }

    #[test]
    fn a_reply_on_one_queue_resolves_the_sibling_that_asked() {
        // Two "queues": two workers with their own wires; the ARP reply arrives on queue 0
        // although queue 1 asked.
        let (mut p0, q0) = pair(MemConfig::default());
        let (mut p1, q1) = pair(MemConfig::default());
        let caps = q0.caps();
        let mut sib = siblings(2).into_iter();
        let clock = Clock::new();
        let mut w0 =
            Worker::new(q0, stack(&caps, TxCsum::Auto), (), WorkerConfig::default(), clock)
                .with_siblings(sib.next().unwrap());
        let mut w1 =
            Worker::new(q1, stack(&caps, TxCsum::Auto), (), WorkerConfig::default(), clock)
                .with_siblings(sib.next().unwrap());
        let h = w1.stack_mut().udp_bind(any(5000), UdpSocketConfig::default()).unwrap();
        w1.stack_mut().udp_send(h, sa(1, 6000), b"queue 1").unwrap();
        assert!(w1.poll_once(Instant::ZERO));
        assert_eq!(recv(&mut p1).len(), 1, "queue 1 asks");
        send(&mut p0, &[frames::arp_reply(PEER, ip(1), US, ip(2))]);
        assert!(w0.poll_once(Instant::from_millis(1)));
        assert!(w0.stack().neighbors().get(ip(1)).is_none(), "queue 0 asked nothing");
        assert!(w1.poll_once(Instant::from_millis(2)));
        let out = recv(&mut p1);
        assert_eq!(out.len(), 1);
        assert_eq!(
            frames::classify(&out[0]),
            Kind::Udp { src: sa(2, 5000), dst: sa(1, 6000), len: 7 }
        );
        assert!(w0.finish().frames.is_ok());
        assert!(w1.finish().frames.is_ok());
    }

    #[test]
    fn the_generator_is_held_back_by_a_full_ring_not_dropped() {
        // A wire of 100 frames toward a peer that does not read: the generator fills it and
        // then waits; nothing is dropped and every frame stays accounted for.
        let cfg = MemConfig { wire_capacity: 100, ..MemConfig::default() };
        let (mut peer, port) = pair(cfg);
        let caps = port.caps();
        let mut s = stack(&caps, TxCsum::Auto);
        s.add_static_neighbor(ip(1), PEER);
        let h = s.udp_bind(any(9), UdpSocketConfig::mode(UdpMode::Sink)).unwrap();
        let gen = GeneratorConfig { dst: sa(1, 9), payload_len: 64, count: None };
        s.udp_generate(h, Some(gen)).unwrap();
        let mut w = worker(port, s);
        for i in 0..10 {
            w.poll_once(Instant::from_nanos(i * 1000));
        }
        assert_eq!(w.port().stats().tx_packets, 100);
        let r = w.finish();
        assert_eq!((r.tx_full_drops, r.stack.udp_tx_datagrams), (0, 100 + 64));
        assert!(r.frames.is_ok());
        let got = recv(&mut peer);
        assert_eq!(got.len(), 100);
        assert_eq!(frames::classify(&got[0]), Kind::Udp { src: sa(2, 9), dst: sa(1, 9), len: 64 });
    }

    /// An app that collects zero-copy deliveries and answers each with a socket send.
    #[derive(Default)]
    struct Collect {
        got: Vec<(SocketAddrV4, Vec<u8>)>,
        reply: Option<libos::udp::UdpHandle>,
    }

    impl App for Collect {
        fn deliver(&mut self, _: Instant, stack: &mut Stack, d: &Delivery, frame: &[u8]) {
            let p = &frame[d.offset as usize..(d.offset + d.len) as usize];
            self.got.push((d.src, p.to_vec()));
            if let Some(h) = self.reply {
                stack.udp_send(h, d.src, p).unwrap();
            }
        }
    }

    #[test]
    fn deliveries_reach_the_app_zero_copy_and_its_sends_go_out() {
        let (mut peer, port) = pair(MemConfig::default());
        let caps = port.caps();
        let mut s = stack(&caps, TxCsum::Partial);
        let h = s.udp_bind(any(11), UdpSocketConfig::mode(UdpMode::Deliver)).unwrap();
        s.add_static_neighbor(ip(1), PEER);
        let app = Collect { got: Vec::new(), reply: Some(h) };
        let mut w = Worker::new(port, s, app, WorkerConfig::default(), Clock::new());
        send(&mut peer, &[frames::udp_frame(PEER, US, sa(1, 4000), sa(2, 11), b"zero copy")]);
        assert!(w.poll_once(Instant::ZERO));
        assert_eq!(w.app().got, vec![(sa(1, 4000), b"zero copy".to_vec())]);
        // The answer went out with a checksum the port completed (Partial on a port without
        // offload: the peer sees a complete, valid one).
        let out = recv(&mut peer);
        assert_eq!(out.len(), 1);
        let u = libos::wire::UdpPacket::new_checked(&out[0][34..]).unwrap();
        assert!(u.verify_checksum(ip(2), ip(1)));
        assert_eq!(w.port().stats().tx_csum_sw, 1);
        assert!(w.finish().frames.is_ok());
    }

    #[test]
    fn run_is_bounded_by_its_deadline_and_sleeps_when_idle() {
        let (_peer, port) = pair(MemConfig::default());
        let caps = port.caps();
        let mut w = Worker::new(
            port,
            stack(&caps, TxCsum::Auto),
            (),
            WorkerConfig { spin: Duration::ZERO, ..WorkerConfig::default() },
            Clock::new(),
        );
        let stop = AtomicBool::new(false);
        let t0 = std::time::Instant::now();
        let r = w.run(&stop, Some(t0 + Duration::from_millis(50)));
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert!(r.sleeps > 0 && r.frames.is_ok());
        assert!(!TxCsum::Stack.offload(&Caps { tx_csum: true, ..caps }));
        assert!("partial".parse::<TxCsum>().unwrap() == TxCsum::Partial);
        assert!("x".parse::<TxCsum>().is_err());
    }
}
