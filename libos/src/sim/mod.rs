//! # Deterministic network simulator
//!
//! What it is: [`Sim`], several [`Stack`]s (and scripted raw hosts) on one simulated Ethernet
//! segment, driven in virtual time with a seeded PRNG ([`rng::Rng`]). The link can lose,
//! duplicate, delay and reorder frames ([`LinkConfig`]). Time never passes on its own: the
//! simulator jumps from one event (a frame arriving, a stack's `poll_timeout`) to the next,
//! so a 30-second reassembly timeout costs microseconds of real time.
//!
//! What it owns: the wire (frames in flight, ordered by arrival time), a trace of every frame
//! put on it, each raw host's inbox and each stack's zero-copy deliveries.
//!
//! How it drives a stack (the same call order a worker uses, see [`Stack`]): after every
//! event, `poll_tx` with 64 free frames until a call leaves some unused; frames that arrive
//! at the same instant for the same node go to one `handle_rx` batch; a node whose
//! `poll_timeout` has passed gets `handle_timeout`. Transmit-in-place verdicts go back on the
//! wire from the same frame. The segment behaves as an ideal switch: a unicast frame reaches
//! the node with that MAC, a broadcast reaches every other node. The simulated device
//! completes `Csum::Partial` checksums, as a NIC with transmit checksum offload would, and
//! splits `Gso::TcpV4` super-segments into MTU-sized segments (software TSO, [`tcp::tso_split`]);
//! with [`Sim::set_gro`] it coalesces in-order TCP segments of a batch into one frame on
//! receive ([`tcp::gro_coalesce`]), as the NIC layer's GRO does.
//!
//! Applications: [`Sim::set_app`] attaches a callback to a stack node that runs after every
//! batch and timer of that node (where a worker would run its services), so a TCP transfer
//! reacts to events in virtual time; [`tcp`] has ready-made ones (bulk transfer, sink, echo).
//!
//! What it never does: read a clock, sleep, or use entropy from the system: a seed determines
//! a run.
//!
//! Invariants: virtual time never goes backwards; a run stops after [`MAX_STEPS`] events even
//! if the stacks keep scheduling work (so a bug cannot hang a test).

pub mod frames;
pub mod rng;
pub mod tcp;
#[cfg(test)]
mod tcp_tests;
#[cfg(test)]
mod tests;

use core::cmp::Reverse;
use core::time::Duration;
use std::collections::BinaryHeap;
use std::net::Ipv4Addr;

use crate::batch::{Delivery, Frame, FrameSlots, Verdict};
use crate::iface::route::Ipv4Cidr;
use crate::stack::{ConfigError, Stack, StackConfig};
use crate::time::Instant;
use crate::wire::{checksum, Csum, EthernetAddress, NetHdr};
use rng::Rng;

/// Events one `run_until` handles at most.
pub const MAX_STEPS: u64 = 1_000_000;

/// Room of each simulated frame buffer.
pub const FRAME_ROOM: usize = 2048;

/// Behaviour of the simulated segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// One-way delay of every frame.
    pub latency: Duration,
    /// Probability that a frame is lost (per receiver).
    pub loss: f64,
    /// Probability that a frame arrives twice.
    pub duplicate: f64,
    /// Probability that a frame is held back by up to `reorder_delay` extra.
    pub reorder: f64,
    /// Largest extra delay of a reordered frame.
    pub reorder_delay: Duration,
    /// Lose the next this-many frames put on the wire, whatever the probabilities.
    pub drop_next: u64,
}

impl LinkConfig {
    /// A perfect link with 10 µs of latency.
    pub fn perfect() -> LinkConfig {
        LinkConfig {
            latency: Duration::from_micros(10),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            drop_next: 0,
        }
    }

    /// A link losing each frame with probability `p`.
    pub fn lossy(p: f64) -> LinkConfig {
        LinkConfig { loss: p, ..LinkConfig::perfect() }
    }

    /// A perfect link that loses the first `n` frames.
    pub fn lossy_first(n: u64) -> LinkConfig {
        LinkConfig { drop_next: n, ..LinkConfig::perfect() }
    }

    /// This link, also reordering with probability `p` by up to `delay`.
    pub fn with_reorder(self, p: f64, delay: Duration) -> LinkConfig {
        LinkConfig { reorder: p, reorder_delay: delay, ..self }
    }

    /// This link, also duplicating with probability `p`.
    pub fn with_duplicate(self, p: f64) -> LinkConfig {
        LinkConfig { duplicate: p, ..self }
    }
}

/// A frame put on the wire.
#[derive(Debug, Clone)]
pub struct TraceEvent {
    /// When.
    pub at: Instant,
    /// By which node.
    pub from: usize,
    /// The frame (checksums completed).
    pub frame: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    to: usize,
    frame: Vec<u8>,
}

#[derive(Debug)]
enum NodeKind {
    Stack(Box<Stack>),
    Raw,
}

/// An application callback on a stack node (see [`Sim::set_app`]).
pub type AppFn = Box<dyn FnMut(Instant, &mut Stack)>;

struct App(AppFn);

impl core::fmt::Debug for App {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("App(..)")
    }
}

#[derive(Debug)]
struct Node {
    mac: EthernetAddress,
    kind: NodeKind,
    inbox: Vec<(Instant, Vec<u8>)>,
    deliveries: Vec<(Instant, Delivery, Vec<u8>)>,
    app: Option<App>,
}

/// The simulator (see the module documentation).
#[derive(Debug)]
pub struct Sim {
    now: Instant,
    rng: Rng,
    link: LinkConfig,
    nodes: Vec<Node>,
    wire: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    trace: Vec<TraceEvent>,
    slots: Vec<Frame>,
    steps: u64,
    gro: bool,
    keep_trace: bool,
}

/// The MAC of the `n`th node of [`Sim::pair`]: `02:00:00:00:00:n`.
pub const fn mac(n: u8) -> EthernetAddress {
    EthernetAddress([2, 0, 0, 0, 0, n])
}

/// The address of the `n`th node of [`Sim::pair`]: `10.0.0.n`.
pub const fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

impl Sim {
    /// An empty segment at time zero.
    pub fn new(seed: u64, link: LinkConfig) -> Sim {
        Sim {
            now: Instant::ZERO,
            rng: Rng::new(seed),
            link,
            nodes: Vec::new(),
            wire: BinaryHeap::new(),
            seq: 0,
            trace: Vec::new(),
            slots: (0..64).map(|_| Frame::empty(FRAME_ROOM)).collect(),
            steps: 0,
            gro: false,
            keep_trace: true,
        }
    }

    /// Two stacks, node 0 (`10.0.0.1/24`, [`mac`]`(1)`) and node 1 (`10.0.0.2/24`,
    /// `mac(2)`), with default configurations.
    pub fn pair(link: LinkConfig, seed: u64) -> Sim {
        Sim::pair_with(link, seed, |_| {})
    }

    /// Like [`pair`](Self::pair), with `tweak` applied to both configurations.
    pub fn pair_with(link: LinkConfig, seed: u64, tweak: impl Fn(&mut StackConfig)) -> Sim {
        let mut sim = Sim::new(seed, link);
        for n in 1..=2 {
            let mut cfg = StackConfig::new(mac(n), &[Ipv4Cidr::new(ip(n), 24)]);
            tweak(&mut cfg);
            // The default configuration is valid; a tweak that breaks it leaves the node out.
            let _ = sim.add_stack(cfg);
        }
        sim
    }

    /// Adds a stack built at the current time; returns its node index.
    pub fn add_stack(&mut self, cfg: StackConfig) -> Result<usize, ConfigError> {
        let mac = cfg.mac;
        let stack = Stack::new(cfg, self.now)?;
        self.nodes.push(Node {
            mac,
            kind: NodeKind::Stack(Box::new(stack)),
            inbox: Vec::new(),
            deliveries: Vec::new(),
            app: None,
        });
        Ok(self.nodes.len() - 1)
    }

    /// Adds a scripted host that only records what it receives ([`inbox`](Self::inbox)) and
    /// sends what the test gives [`send_raw`](Self::send_raw).
    pub fn add_raw(&mut self, mac: EthernetAddress) -> usize {
        self.nodes.push(Node {
            mac,
            kind: NodeKind::Raw,
            inbox: Vec::new(),
            deliveries: Vec::new(),
            app: None,
        });
        self.nodes.len() - 1
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Changes the link's behaviour from now on.
    pub fn set_link(&mut self, link: LinkConfig) {
        self.link = link;
    }

    /// The stack of node `i`.
    ///
    /// # Panics
    /// If node `i` does not exist or is a raw host (a bug in the test).
    pub fn stack(&mut self, i: usize) -> &mut Stack {
        match self.nodes.get_mut(i).map(|n| &mut n.kind) {
            Some(NodeKind::Stack(s)) => s,
            _ => panic!("sim: node {i} is not a stack"),
        }
    }

    /// Attaches an application to stack node `i`: it runs after every received batch and
    /// every timer of that node, and once now.
    pub fn set_app(&mut self, i: usize, app: AppFn) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.app = Some(App(app));
        }
        self.run_app(i);
        self.flush_tx();
    }

    /// Removes node `i`'s application.
    pub fn clear_app(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.app = None;
        }
    }

    fn run_app(&mut self, i: usize) {
        let now = self.now;
        if let Some(n) = self.nodes.get_mut(i) {
            if let (Some(App(app)), NodeKind::Stack(s)) = (&mut n.app, &mut n.kind) {
                app(now, s);
            }
        }
    }

    /// Transmit buffers of `room` bytes (a super-segment needs up to 64 KiB + headers).
    pub fn set_tx_room(&mut self, room: usize) {
        self.slots = (0..64).map(|_| Frame::empty(room.max(64))).collect();
    }

    /// Coalesce received TCP segments per batch (GRO) from now on.
    pub fn set_gro(&mut self, on: bool) {
        self.gro = on;
    }

    /// Record frames in the trace (on by default; long transfers turn it off to save memory).
    pub fn set_trace(&mut self, on: bool) {
        self.keep_trace = on;
    }

    /// Events handled so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The TCP counters of stack node `i` (default counters for a raw host).
    pub fn nodes_tcp_stats(&self, i: usize) -> crate::tcp::TcpStats {
        match self.nodes.get(i).map(|n| &n.kind) {
            Some(NodeKind::Stack(s)) => s.tcp().stats().clone(),
            _ => crate::tcp::TcpStats::default(),
        }
    }

    /// Frames a raw host received, with their arrival times.
    pub fn inbox(&self, i: usize) -> &[(Instant, Vec<u8>)] {
        self.nodes.get(i).map_or(&[], |n| &n.inbox[..])
    }

    /// Zero-copy deliveries a stack made (`Deliver`-mode sockets), with a copy of the payload.
    pub fn deliveries(&self, i: usize) -> &[(Instant, Delivery, Vec<u8>)] {
        self.nodes.get(i).map_or(&[], |n| &n.deliveries[..])
    }

    /// Every frame put on the wire so far.
    pub fn trace(&self) -> &[TraceEvent] {
        &self.trace
    }

    /// Puts `frame` on the wire from node `from` now.
    pub fn send_raw(&mut self, from: usize, frame: &[u8]) {
        self.transmit(from, frame.to_vec(), NetHdr::NONE);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Runs until virtual time `t` (or [`MAX_STEPS`] events).
    pub fn run_until(&mut self, t: Instant) {
        let mut steps = 0;
        loop {
            self.flush_tx();
            let next_wire = self.wire.peek().map(|Reverse(f)| f.at);
            let next_timer = self
                .nodes
                .iter()
                .filter_map(|n| match &n.kind {
                    NodeKind::Stack(s) => s.poll_timeout(),
                    NodeKind::Raw => None,
                })
                .min();
            let next = match (next_wire, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(x) => x,
                    None => break,
                },
            };
            if next > t || steps >= MAX_STEPS {
                break;
            }
            steps += 1;
            self.now = self.now.max(next);
            self.deliver_due();
            let now = self.now;
            for i in 0..self.nodes.len() {
                let due = match &mut self.nodes[i].kind {
                    NodeKind::Stack(s) if s.poll_timeout().is_some_and(|d| d <= now) => {
                        s.handle_timeout(now);
                        true
                    }
                    _ => false,
                };
                if due {
                    self.run_app(i);
                }
            }
        }
        self.steps += steps;
        self.now = self.now.max(t);
        self.flush_tx();
    }

    /// Hands every frame due by now to its node, in batches of up to 64 per node, and lets
    /// the stacks transmit after each batch (as a worker loop does).
    fn deliver_due(&mut self) {
        let mut batches: Vec<Vec<Frame>> = (0..self.nodes.len()).map(|_| Vec::new()).collect();
        while self.wire.peek().is_some_and(|Reverse(f)| f.at <= self.now) {
            let Some(Reverse(f)) = self.wire.pop() else { break };
            if let Some(b) = batches.get_mut(f.to) {
                b.push(Frame::new(&f.frame, f.frame.len()));
            }
        }
        if self.gro {
            for b in &mut batches {
                if b.len() > 1 {
                    *b = tcp::gro_coalesce(core::mem::take(b));
                }
            }
        }
        let now = self.now;
        for (i, mut batch) in batches.into_iter().enumerate() {
            for chunk in batch.chunks_mut(64) {
                let node = &mut self.nodes[i];
                let NodeKind::Stack(stack) = &mut node.kind else {
                    node.inbox.extend(chunk.iter().map(|f| (now, f.buf.clone())));
                    continue;
                };
                stack.handle_rx(now, chunk);
                let mut out = Vec::new();
                for f in chunk.iter() {
                    match f.verdict {
                        Verdict::Transmit { .. } => out.push((f.bytes().to_vec(), f.hdr)),
                        Verdict::Deliver(d) => {
                            let (a, b) = (d.offset as usize, (d.offset + d.len) as usize);
                            let payload = f.buf.get(a..b).unwrap_or(&[]).to_vec();
                            node.deliveries.push((now, d, payload));
                        }
                        Verdict::Consumed | Verdict::Drop(_) => {}
                    }
                }
                for (frame, hdr) in out {
                    self.transmit(i, frame, hdr);
                }
                self.run_app(i);
                self.flush_tx();
            }
        }
    }

    /// Lets every stack fill transmit slots until it leaves some unused.
    fn flush_tx(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            while let NodeKind::Stack(stack) = &mut self.nodes[i].kind {
                let mut slots = FrameSlots::new(&mut self.slots);
                let n = stack.poll_tx(now, &mut slots);
                let sent: Vec<(Vec<u8>, NetHdr)> =
                    self.slots[..n].iter().map(|f| (f.bytes().to_vec(), f.hdr)).collect();
                let full = n == self.slots.len();
                for (frame, hdr) in sent {
                    self.transmit(i, frame, hdr);
                }
                if !full {
                    break;
                }
            }
        }
    }

    /// Puts a frame on the wire: completes a partial checksum, records it, and schedules its
    /// arrival at each receiver according to the link's behaviour.
    fn transmit(&mut self, from: usize, mut frame: Vec<u8>, hdr: NetHdr) {
        if let crate::wire::Gso::TcpV4 { size, hdr_len } = hdr.gso {
            for seg in tcp::tso_split(&frame, usize::from(size), usize::from(hdr_len)) {
                self.transmit(from, seg, NetHdr::NONE);
            }
            return;
        }
        if let Csum::Partial { start, offset } = hdr.csum {
            let (s, at) = (usize::from(start), usize::from(start) + usize::from(offset));
            if at + 2 <= frame.len() {
                let c = checksum::checksum(&frame[s..]);
                let c = if c == 0 { 0xffff } else { c };
                frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
        }
        if self.keep_trace {
            self.trace.push(TraceEvent { at: self.now, from, frame: frame.clone() });
        }
        if self.link.drop_next > 0 {
            self.link.drop_next -= 1;
            return;
        }
        let dst = EthernetAddress::from_bytes(&frame).unwrap_or_default();
        let receivers: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| i != from && (dst.is_multicast() || self.nodes[i].mac == dst))
            .collect();
        for to in receivers {
            if self.rng.chance(self.link.loss) {
                continue;
            }
            let copies = if self.rng.chance(self.link.duplicate) { 2 } else { 1 };
            for _ in 0..copies {
                let mut at = self.now + self.link.latency;
                if self.rng.chance(self.link.reorder) {
                    let extra = self.rng.below(self.link.reorder_delay.as_nanos() as u64 + 1);
                    at = at + Duration::from_nanos(extra);
                }
                self.seq += 1;
                self.wire.push(Reverse(InFlight { at, seq: self.seq, to, frame: frame.clone() }));
            }
        }
    }
}
