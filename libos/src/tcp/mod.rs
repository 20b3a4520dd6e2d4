//! # TCP: the connections of one worker's stack
//!
//! What it is: [`Tcp`], every TCP endpoint of one [`crate::Stack`]: listeners, connections
//! (RFC 9293 with the extensions listed below), TIME-WAIT entries, stateless replies, the
//! timers and the event queue through which the worker learns what happened. The stack hands it
//! each received TCP segment (`on_segment`, from `handle_rx`), lets it fill transmit slots
//! (`poll_tx`), and forwards `poll_timeout`/`handle_timeout`. Applications on the worker use the
//! socket API here ([`crate::Stack::tcp_mut`]) plus `tcp_listen`/`tcp_connect` on the stack
//! (which know the interface's addresses and routes).
//!
//! What it owns, all allocated once in [`Tcp::new`] (bounded; nothing per segment):
//! - `max_connections` connection slots (`conn::Conn`, 832 bytes each on x86-64) with their
//!   receive and send buffers, two arenas of `max_connections × rx_buffer` and
//!   `max_connections × tx_buffer` bytes (zero pages until touched, so unused slots cost
//!   address space, not memory). Per connection: 832 B of control block, `rx_buffer` +
//!   `tx_buffer` bytes of buffers (256 KiB each by default; 2 × 16 KiB makes 10,000
//!   connections cost 330 MiB), 32 B of demultiplexing table, about 24 B of timer heap and
//!   queues. A TIME-WAIT entry costs about 120 B with its table slots;
//! - the demultiplexing table (`table::FlowMap`): 4-tuple → slot in O(1), never a scan;
//! - listeners with their accept queues and the SYN-cookie machinery (`listen`);
//! - TIME-WAIT entries in their own table (`timewait`);
//! - the timer heap (`timer`), the transmit queue (connections with something to send), the
//!   ready queue (connections and listeners with events), and the queue of stateless replies
//!   (RSTs, cookie SYN-ACKs, TIME-WAIT ACKs), each bounded by the number of slots.
//!
//! Implemented: three-way handshake both ways, simultaneous open and close, FIN and RST in
//! every state, TIME-WAIT with RFC 6191 reuse; MSS option and path MTU (ICMP fragmentation
//! needed, RFC 1191/5927); window scaling, timestamps and PAWS (RFC 7323); SACK (RFC 2018) and
//! SACK-based loss recovery (RFC 6675); NewReno (RFC 6582) without SACK; RTO with backoff and
//! Karn's rule (RFC 6298); tail-loss probes (RFC 8985 §7) and detection of lost
//! retransmissions from SACKs; CUBIC (RFC 9438, default) or NewReno congestion control;
//! limited transmit (RFC 3042); delayed ACKs and quick ACKs; Nagle and SWS avoidance on both sides;
//! zero-window probes; keep-alive; RFC 5961 (challenge ACKs, RST and SYN checks, ACK range);
//! listen backlog with SYN cookies (RFC 4987); keyed ISNs (RFC 6528); segmentation offload
//! (super-segments out, coalesced segments in).
//!
//! What it never does: read a clock, allocate after construction (except an accept queue at
//! `listen`), scan all connections on a per-segment path, or panic on any input.
//!
//! Events: a connection gets readiness bits ([`Ready`]) as things happen; the first bit puts it
//! on the ready queue once; [`Tcp::poll_event`] hands out each connection's accumulated bits
//! and clears them (edge-triggered, like epoll's `EPOLLET`). Half-open and not-yet-accepted
//! connections report nothing until accepted; orphaned ones (closed by the application) never.
//!
//! Invariants: a slot is in the demultiplexing table iff it is live and not CLOSED; each slot
//! appears at most once in the transmit queue, the ready queue and the timer heap; `stats.states`
//! counts live slots by state plus TIME-WAIT entries.
//!
//! References: the module headers of each part (`conn` lists the RFCs of the state machine).

pub mod cc;
pub mod config;
mod conn;
mod hash;
mod listen;
mod output;
mod recv_buf;
mod rto;
mod sack;
mod send_buf;
mod seq;
pub mod state;
mod table;
mod timer;
mod timewait;

use core::time::Duration;
use std::net::{Ipv4Addr, SocketAddrV4};

pub use cc::CcAlgorithm;
pub use config::{
    ConnStats, Keepalive, ListenHandle, Ready, SynCookies, TcpConfig, TcpDrop, TcpError, TcpEvent,
    TcpHandle, TcpInfo, TcpStats,
};
pub use state::TcpState;

use crate::batch::{TxSlots, Verdict};
use crate::iface::neighbor::{Lookup, NeighborCache};
use crate::iface::route::RouteTable;
use crate::ring::FixedRing;
use crate::stats::{DropReason, Stats};
use crate::time::{earliest, Instant};
use crate::wire::{
    Csum, EthernetAddress, Gso, NetHdr, SackBlocks, TcpFlags, TcpPacket, TcpRepr, TcpTimestamps,
    IPV4_HEADER_LEN,
};
use conn::{Conn, Env, Mem, Owner, RateLimit, Seg, SynOpts};
use hash::{tuple_words, Secret};
use listen::Listeners;
pub(crate) use output::L2;
use output::{write_segment, SegmentSpec};
use table::{FlowKey, FlowMap};
use timer::TimerQueue;
use timewait::{TimeWait, TwAction};

/// Frames one connection may fill per turn in `poll_tx` before the next one gets its turn.
const TX_BURST: usize = 16;

/// Ready-queue entries at or above this are listeners.
const LISTENER_TAG: u32 = 1 << 31;

/// A stateless segment (RST, cookie SYN-ACK, TIME-WAIT ACK) to send to a link-layer address.
#[derive(Debug, Clone, Copy)]
struct Ctl {
    local: SocketAddrV4,
    remote: SocketAddrV4,
    peer: EthernetAddress,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    ts: Option<TcpTimestamps>,
    syn: Option<SynOpts>,
}

impl Default for Ctl {
    fn default() -> Ctl {
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        Ctl {
            local: any,
            remote: any,
            peer: EthernetAddress::default(),
            seq: 0,
            ack: 0,
            flags: TcpFlags::empty(),
            window: 0,
            ts: None,
            syn: None,
        }
    }
}

/// What `poll_tx` borrows from the stack.
#[derive(Debug)]
pub(crate) struct TxEnv<'a> {
    pub l2: L2,
    pub neighbors: &'a mut NeighborCache,
    pub ident: &'a mut u16,
    pub stats: &'a mut Stats,
}

/// The TCP endpoints of one stack (see the module documentation).
#[derive(Debug)]
pub struct Tcp {
    cfg: TcpConfig,
    secret: Secret,
    mtu: u16,
    conns: Vec<Conn>,
    live: Vec<bool>,
    free: Vec<u32>,
    rx_mem: Box<[u8]>,
    tx_mem: Box<[u8]>,
    demux: FlowMap,
    listeners: Listeners,
    tw: TimeWait,
    timers: TimerQueue,
    txq: FixedRing<u32>,
    ready: FixedRing<u32>,
    ctl: FixedRing<Ctl>,
    stats: TcpStats,
    challenge: RateLimit,
    port_seq: u32,
    /// The latest `now` seen (for user calls, which take none).
    now: Instant,
}

/// Splits the arenas into slot `i`'s buffers.
fn mem_of<'a>(rx: &'a mut [u8], tx: &'a mut [u8], rxb: usize, txb: usize, i: usize) -> Mem<'a> {
    Mem { rx: &mut rx[i * rxb..(i + 1) * rxb], tx: &mut tx[i * txb..(i + 1) * txb] }
}

impl Tcp {
    /// Allocates every table for `cfg` on a link of `mtu` bytes (IP MTU).
    pub fn new(cfg: TcpConfig, mtu: usize, now: Instant) -> Tcp {
        let mut cfg = cfg;
        cfg.max_connections = cfg.max_connections.clamp(1, (LISTENER_TAG - 1) as usize);
        cfg.rx_buffer = cfg.rx_buffer.clamp(256, 1 << 30);
        cfg.tx_buffer = cfg.tx_buffer.clamp(256, 1 << 30);
        cfg.tso_max = cfg.tso_max.clamp(1, 65535 - 120);
        // RFC 9293 §3.8.6.3 (MUST-40): an ACK is never delayed 500 ms or more.
        cfg.delayed_ack = cfg.delayed_ack.min(Duration::from_millis(499));
        cfg.initial_cwnd = cfg.initial_cwnd.clamp(1, 64);
        cfg.min_rto = cfg.min_rto.max(Duration::from_millis(1));
        cfg.max_rto = cfg.max_rto.max(cfg.min_rto);
        if cfg.ephemeral_ports.0 == 0 || cfg.ephemeral_ports.0 > cfg.ephemeral_ports.1 {
            cfg.ephemeral_ports = (49152, 65535);
        }
        let n = cfg.max_connections;
        let secret = Secret::new(cfg.secret[0], cfg.secret[1]);
        let mtu = mtu.clamp(68, 65535) as u16;
        let blank =
            Conn::connect(now, &cfg, FlowKey::default(), 0, 0, Ipv4Addr::UNSPECIFIED, mtu, 0);
        let mut conns = vec![blank; n];
        for c in &mut conns {
            c.state = TcpState::Closed;
        }
        Tcp {
            secret,
            mtu,
            conns,
            live: vec![false; n],
            free: (0..n as u32).rev().collect(),
            rx_mem: vec![0u8; n * cfg.rx_buffer].into_boxed_slice(),
            tx_mem: vec![0u8; n * cfg.tx_buffer].into_boxed_slice(),
            demux: FlowMap::new(n, secret),
            listeners: Listeners::new(cfg.max_listeners),
            tw: TimeWait::new(cfg.max_time_wait, cfg.time_wait, secret),
            timers: TimerQueue::new(n),
            txq: FixedRing::new(n),
            ready: FixedRing::new(n + cfg.max_listeners),
            ctl: FixedRing::new(256),
            stats: TcpStats::default(),
            challenge: RateLimit::default(),
            port_seq: 0,
            now,
            cfg,
        }
    }

    /// The configuration in use (after clamping).
    pub fn config(&self) -> &TcpConfig {
        &self.cfg
    }

    /// Stack-wide counters.
    pub fn stats(&self) -> &TcpStats {
        &self.stats
    }

    /// Live connections (TIME-WAIT entries excluded).
    pub fn connections(&self) -> usize {
        self.conns.len() - self.free.len()
    }

    /// A one-line dump of every live connection's sequence and recovery state (debugging).
    #[doc(hidden)]
    pub fn debug_dump(&self) -> String {
        let mut out = String::new();
        for (i, c) in self.conns.iter().enumerate() {
            if self.live[i] {
                out.push_str(&c.debug_line());
                out.push('\n');
            }
        }
        out
    }

    /// TIME-WAIT entries.
    pub fn time_wait_entries(&self) -> usize {
        self.tw.len()
    }

    // ---------------------------------------------------------------------------------------
    // Slots.

    fn handle_of(&self, i: usize) -> TcpHandle {
        TcpHandle { index: i as u32, generation: self.conns[i].generation }
    }

    fn slot(&self, h: TcpHandle) -> Result<usize, TcpError> {
        let i = h.index as usize;
        match (self.live.get(i), self.conns.get(i)) {
            (Some(true), Some(c)) if c.generation == h.generation && c.owner == Owner::App => Ok(i),
            _ => Err(TcpError::InvalidHandle),
        }
    }

    fn alloc(&mut self, mut c: Conn) -> Option<usize> {
        let i = self.free.pop()? as usize;
        c.generation = self.conns[i].generation;
        // Queue memberships survive reuse of the slot (see the module invariants).
        c.in_txq = self.conns[i].in_txq;
        c.in_ready = self.conns[i].in_ready;
        c.in_demux = false;
        self.stats.states[c.state as usize] += 1;
        self.conns[i] = c;
        self.live[i] = true;
        Some(i)
    }

    fn release(&mut self, i: usize) {
        if !self.live[i] {
            return;
        }
        let c = &mut self.conns[i];
        if c.in_demux {
            self.demux.remove(&c.key);
            c.in_demux = false;
        }
        self.stats.states[c.state as usize] = self.stats.states[c.state as usize].saturating_sub(1);
        c.generation = c.generation.wrapping_add(1);
        c.ev = Ready::empty();
        c.state = TcpState::Closed;
        self.timers.remove(i as u32);
        self.live[i] = false;
        self.free.push(i as u32);
    }

    /// Reconciles the tables with what a connection call changed (state, events, timers, the
    /// transmit queue). `prev` is the state before the call.
    fn after(&mut self, i: usize, prev: TcpState, now: Instant) {
        if !self.live[i] {
            return;
        }
        let state = self.conns[i].state;
        self.stats.moved(prev, state);
        let c = &mut self.conns[i];
        if prev == TcpState::SynReceived && state != TcpState::SynReceived {
            if let Owner::Listener(l) = c.owner {
                if let Some(l) = self.listeners.get_mut(usize::from(l)) {
                    l.syn_count = l.syn_count.saturating_sub(1);
                }
            }
        }
        if c.just_established {
            c.just_established = false;
            if let Owner::Listener(li) = c.owner {
                let mut queued = false;
                if let Some(l) = self.listeners.get_mut(usize::from(li)) {
                    if l.accept.push(i as u32) {
                        queued = true;
                        l.ev = true;
                        if !l.in_ready {
                            l.in_ready = true;
                            self.ready.push(LISTENER_TAG | u32::from(li));
                        }
                    }
                }
                match queued {
                    true => c.in_accept = true,
                    false => {
                        // No room after all (or the listener is gone): reset it.
                        c.abort();
                        c.owner = Owner::Orphan;
                    }
                }
            }
        }
        let c = &mut self.conns[i];
        // A connection entering TIME-WAIT first sends what it owes (the ACK of the FIN).
        if c.state == TcpState::TimeWait && !c.wants_tx() {
            let entry = c.time_wait_entry(now);
            c.state = TcpState::Closed;
            self.stats.moved(TcpState::TimeWait, TcpState::Closed);
            if c.in_demux {
                self.demux.remove(&c.key);
                c.in_demux = false;
            }
            if self.tw.insert(now, entry) {
                self.stats.time_wait_overflows += 1;
            } else {
                self.stats.states[TcpState::TimeWait as usize] += 1;
            }
        }
        let c = &mut self.conns[i];
        if c.state == TcpState::Closed && c.in_demux {
            self.demux.remove(&c.key);
            c.in_demux = false;
        }
        if c.owner == Owner::Orphan {
            c.ev = Ready::empty();
        }
        if !c.ev.is_empty() && c.owner == Owner::App && !c.in_ready {
            c.in_ready = true;
            self.ready.push(i as u32);
        }
        let dead = c.state == TcpState::Closed && !c.rst_pending;
        let unowned =
            c.owner == Owner::Orphan || (matches!(c.owner, Owner::Listener(_)) && !c.in_accept);
        if dead && unowned {
            self.release(i);
            return;
        }
        c.check_persist(now);
        if c.wants_tx() && !c.in_txq {
            c.in_txq = true;
            self.txq.push(i as u32);
        }
        if let Some(t) = c.next_deadline() {
            self.timers.arm(i as u32, t.as_nanos());
        }
    }

    fn env<'a>(
        cfg: &'a TcpConfig,
        stats: &'a mut TcpStats,
        challenge: &'a mut RateLimit,
        now: Instant,
    ) -> Env<'a> {
        Env { now, cfg, stats, challenge, accept_room: true }
    }

    // ---------------------------------------------------------------------------------------
    // Receive.

    /// Handles one received TCP segment (`bytes`: the IPv4 payload) from `src` to `dst`
    /// (one of ours), sent by link-layer address `peer`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_segment(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        peer: EthernetAddress,
        bytes: &[u8],
        hdr: NetHdr,
        routes: &RouteTable,
    ) -> Verdict {
        let pkt = match TcpPacket::new_checked(bytes) {
            Ok(p) => p,
            Err(crate::wire::Error::Truncated) => return Verdict::Drop(DropReason::Truncated),
            Err(crate::wire::Error::Malformed) => return Verdict::Drop(DropReason::Malformed),
        };
        let verified = matches!(hdr.csum, Csum::Valid | Csum::Partial { .. });
        if !verified && !pkt.verify_checksum(src, dst) {
            return Verdict::Drop(DropReason::BadChecksum);
        }
        let Ok(repr) = TcpRepr::parse(&pkt) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        if repr.src_port == 0 || repr.dst_port == 0 {
            return Verdict::Drop(DropReason::Malformed);
        }
        self.now = self.now.max(now);
        let segments = match hdr.gso {
            Gso::TcpV4 { .. } if hdr.segments > 1 => hdr.segments,
            _ => 1,
        };
        self.stats.segs_in += 1;
        if segments > 1 {
            self.stats.gro_frames += 1;
        }
        let seg = Seg {
            seq: repr.seq_number,
            ack: repr.ack_number,
            flags: repr.flags,
            wnd: repr.window_len,
            mss: repr.max_seg_size,
            ws: repr.window_scale,
            sack_perm: repr.sack_permitted,
            sack: repr.sack_ranges,
            ts: repr.timestamps,
            payload: pkt.payload(),
            segments,
        };
        let local = SocketAddrV4::new(dst, repr.dst_port);
        let remote = SocketAddrV4::new(src, repr.src_port);
        let key = FlowKey::new(local, remote);
        let drop = if let Some(i) = self.demux.get(&key) {
            self.conn_segment(now, i as usize, &seg, peer)
        } else if let Some(t) = self.tw.lookup(&key) {
            self.tw_segment(now, t, &key, &seg, peer, routes)
        } else {
            self.listen_segment(now, &key, &seg, peer, routes, None)
        };
        match drop {
            None => Verdict::Consumed,
            Some(TcpDrop::NoSocket) => {
                self.stats.drop(TcpDrop::NoSocket);
                Verdict::Drop(DropReason::NoSocket)
            }
            Some(d) => {
                self.stats.drop(d);
                Verdict::Drop(DropReason::Tcp)
            }
        }
    }

    fn conn_segment(
        &mut self,
        now: Instant,
        i: usize,
        seg: &Seg<'_>,
        peer: EthernetAddress,
    ) -> Option<TcpDrop> {
        let (rxb, txb) = (self.cfg.rx_buffer, self.cfg.tx_buffer);
        let accept_room = match self.conns[i].owner {
            Owner::Listener(l) => {
                self.listeners.get(usize::from(l)).is_some_and(|l| l.accept.len() < l.backlog)
            }
            _ => true,
        };
        let prev = self.conns[i].state;
        let mut env = Tcp::env(&self.cfg, &mut self.stats, &mut self.challenge, now);
        env.accept_room = accept_room;
        let mut mem = mem_of(&mut self.rx_mem, &mut self.tx_mem, rxb, txb, i);
        let (drop, rst) = self.conns[i].on_segment(&mut env, &mut mem, seg);
        if let Some(r) = rst {
            let key = self.conns[i].key;
            self.send_rst(key.local(), key.remote(), peer, r.seq, None);
        }
        self.after(i, prev, now);
        drop
    }

    fn tw_segment(
        &mut self,
        now: Instant,
        t: usize,
        key: &FlowKey,
        seg: &Seg<'_>,
        peer: EthernetAddress,
        routes: &RouteTable,
    ) -> Option<TcpDrop> {
        let tsval = seg.ts.map(|ts| ts.tsval);
        let Some(e) = self.tw.get(t).copied() else { return Some(TcpDrop::Ignored) };
        match self.tw.on_segment(t, now, seg.flags, seg.seq, seg.payload.len(), tsval) {
            TwAction::Drop => Some(TcpDrop::Ignored),
            TwAction::Ack => {
                let ts = e.ts_on.then(|| TcpTimestamps {
                    tsval: ((now.as_nanos() / 1_000_000) as u32).wrapping_add(e.ts_offset),
                    tsecr: e.ts_recent,
                });
                self.push_ctl(Ctl {
                    local: key.local(),
                    remote: key.remote(),
                    peer,
                    seq: e.snd_nxt,
                    ack: e.rcv_nxt,
                    flags: TcpFlags::ACK,
                    window: e.window,
                    ts,
                    syn: None,
                });
                None
            }
            TwAction::Reopen => {
                self.stats.states[TcpState::TimeWait as usize] =
                    self.stats.states[TcpState::TimeWait as usize].saturating_sub(1);
                self.stats.time_wait_reused += 1;
                // RFC 6191: the new ISN lies above the old incarnation's sequence space.
                let floor = e.snd_nxt.wrapping_add(65535 + 2);
                self.listen_segment(now, key, seg, peer, routes, Some(floor))
            }
        }
    }

    /// The ISN for `key` at `now` (RFC 6528: a 64 ns clock plus a keyed hash of the 4-tuple).
    fn isn(&self, now: Instant, key: &FlowKey) -> u32 {
        let [a, b] = tuple_words(key.lip, key.lport, key.rip, key.rport);
        let f = self.secret.siphash(&[a, b, 1]) as u32;
        ((now.as_nanos() >> 6) as u32).wrapping_add(f)
    }

    /// The per address pair timestamp offset (RFC 7323 §5.4, Linux's `secure_tcp_ts_off`).
    fn ts_offset(&self, key: &FlowKey) -> u32 {
        let w = (u64::from(key.lip) << 32) | u64::from(key.rip);
        self.secret.siphash(&[w, 2]) as u32
    }

    fn next_hop(routes: &RouteTable, ip: Ipv4Addr) -> Ipv4Addr {
        routes.next_hop(ip).unwrap_or(ip)
    }

    /// LISTEN processing (RFC 9293 §3.10.7.2) and segments for no socket (§3.10.7.1).
    fn listen_segment(
        &mut self,
        now: Instant,
        key: &FlowKey,
        seg: &Seg<'_>,
        peer: EthernetAddress,
        routes: &RouteTable,
        isn_floor: Option<u32>,
    ) -> Option<TcpDrop> {
        let f = seg.flags;
        let Some(li) = self.listeners.lookup(Ipv4Addr::from(key.lip), key.lport) else {
            self.reset_for(key, seg, peer);
            return Some(TcpDrop::NoSocket);
        };
        if f.contains(TcpFlags::RST) {
            return Some(TcpDrop::Ignored);
        }
        if f.contains(TcpFlags::ACK) {
            if f.contains(TcpFlags::SYN) {
                self.send_rst(key.local(), key.remote(), peer, seg.ack, None);
                return Some(TcpDrop::Ignored);
            }
            return self.cookie_ack(now, li, key, seg, peer, routes);
        }
        if !f.contains(TcpFlags::SYN) {
            return Some(TcpDrop::Ignored);
        }
        if f.contains(TcpFlags::FIN) {
            // SYN and FIN together open nothing: dropped silently, as Linux does
            // (`tcp_rcv_state_process`, TCP_LISTEN), not answered with a SYN-ACK (found by
            // tests/hostile.rs comparing xdpos's answers with the kernel's).
            return Some(TcpDrop::Ignored);
        }
        let (full_accept, syn_full) = match self.listeners.get(li) {
            Some(l) => (l.accept.len() >= l.backlog, l.syn_count >= self.cfg.syn_backlog),
            None => return Some(TcpDrop::Ignored),
        };
        if full_accept {
            self.stats.listen_overflows += 1;
            return Some(TcpDrop::ListenOverflow);
        }
        let no_slot = self.free.is_empty();
        let cookies = match self.cfg.syn_cookies {
            SynCookies::Off => false,
            SynCookies::Auto => syn_full || no_slot,
            SynCookies::Always => true,
        };
        if cookies && isn_floor.is_none() {
            self.cookie_syn_ack(now, key, seg, peer);
            return None;
        }
        if syn_full || no_slot {
            return Some(TcpDrop::SynQueueFull);
        }
        let mut iss = self.isn(now, key);
        if let Some(floor) = isn_floor {
            iss = floor.wrapping_add(iss & 0xffff);
        }
        let c = Conn::accept_syn(
            now,
            &self.cfg,
            *key,
            iss,
            self.ts_offset(key),
            Tcp::next_hop(routes, Ipv4Addr::from(key.rip)),
            self.mtu,
            0,
            li as u16,
            seg,
        );
        let Some(i) = self.alloc(c) else { return Some(TcpDrop::SynQueueFull) };
        if !self.demux.insert(*key, i as u32) {
            self.release(i);
            return Some(TcpDrop::SynQueueFull);
        }
        self.conns[i].in_demux = true;
        if let Some(l) = self.listeners.get_mut(li) {
            l.syn_count += 1;
        }
        self.stats.passive_opens += 1;
        self.conns[i].stats.segs_in += 1;
        self.after(i, TcpState::SynReceived, now);
        None
    }

    fn cookie_syn_ack(
        &mut self,
        now: Instant,
        key: &FlowKey,
        seg: &Seg<'_>,
        peer: EthernetAddress,
    ) {
        let peer_mss = seg.mss.unwrap_or(conn::DEFAULT_MSS);
        let idx = listen::cookie_mss_index(peer_mss);
        let isn = listen::cookie_isn(&self.secret, key, seg.seq, now, idx);
        let ts_on = self.cfg.timestamps && seg.ts.is_some();
        let ws = (ts_on && self.cfg.window_scaling && seg.ws.is_some())
            .then(|| conn::wscale_for(self.cfg.rx_buffer));
        let sack = ts_on && self.cfg.sack && seg.sack_perm;
        let ts = seg.ts.filter(|_| ts_on).map(|t| {
            let now_ts = ((now.as_nanos() / 1_000_000) as u32).wrapping_add(self.ts_offset(key));
            TcpTimestamps {
                tsval: listen::cookie_tsval(now_ts, seg.ws.filter(|_| ws.is_some()), sack),
                tsecr: t.tsval,
            }
        });
        let adv_mss = self.mtu.saturating_sub(40);
        let window =
            (self.cfg.rx_buffer.saturating_sub((1usize << ws.unwrap_or(0)) - 1)).min(65535) as u16;
        self.stats.syn_cookies_sent += 1;
        self.push_ctl(Ctl {
            local: key.local(),
            remote: key.remote(),
            peer,
            seq: isn,
            ack: seg.seq.wrapping_add(1),
            flags: TcpFlags::SYN | TcpFlags::ACK,
            window,
            ts,
            syn: Some(SynOpts { mss: adv_mss, ws, sack_perm: sack }),
        });
    }

    fn cookie_ack(
        &mut self,
        now: Instant,
        li: usize,
        key: &FlowKey,
        seg: &Seg<'_>,
        peer: EthernetAddress,
        routes: &RouteTable,
    ) -> Option<TcpDrop> {
        let idx = match self.cfg.syn_cookies {
            SynCookies::Off => None,
            _ => listen::cookie_check(&self.secret, key, seg.ack, seg.seq, now),
        };
        let Some(idx) = idx else {
            if self.cfg.syn_cookies != SynCookies::Off {
                self.stats.syn_cookies_failed += 1;
            }
            self.send_rst(key.local(), key.remote(), peer, seg.ack, None);
            return Some(TcpDrop::BadCookie);
        };
        let Some(l) = self.listeners.get(li) else { return Some(TcpDrop::Ignored) };
        if l.accept.len() >= l.backlog {
            self.stats.listen_overflows += 1;
            return Some(TcpDrop::ListenOverflow);
        }
        let (ws, sack) = match seg.ts {
            Some(ts) if self.cfg.timestamps => listen::cookie_ts_decode(ts.tsecr),
            _ => (None, false),
        };
        let c = Conn::from_cookie(
            now,
            &self.cfg,
            *key,
            seg.ack.wrapping_sub(1),
            self.ts_offset(key),
            Tcp::next_hop(routes, Ipv4Addr::from(key.rip)),
            self.mtu,
            0,
            li as u16,
            seg,
            listen::COOKIE_MSS[idx as usize],
            ws,
            sack,
        );
        let Some(i) = self.alloc(c) else { return Some(TcpDrop::SynQueueFull) };
        if !self.demux.insert(*key, i as u32) {
            self.release(i);
            return Some(TcpDrop::SynQueueFull);
        }
        self.conns[i].in_demux = true;
        self.stats.syn_cookies_validated += 1;
        self.stats.passive_opens += 1;
        self.after(i, TcpState::Established, now);
        // The ACK may carry data (or a FIN): process it as an ESTABLISHED segment.
        if !seg.payload.is_empty() || seg.flags.contains(TcpFlags::FIN) {
            return self.conn_segment(now, i, seg, peer);
        }
        None
    }

    /// The RST for a segment that reached no connection (RFC 9293 §3.10.7.1).
    fn reset_for(&mut self, key: &FlowKey, seg: &Seg<'_>, peer: EthernetAddress) {
        if seg.flags.contains(TcpFlags::RST) {
            return;
        }
        if seg.flags.contains(TcpFlags::ACK) {
            self.send_rst(key.local(), key.remote(), peer, seg.ack, None);
        } else {
            self.send_rst(
                key.local(),
                key.remote(),
                peer,
                0,
                Some(seg.seq.wrapping_add(seg.len())),
            );
        }
    }

    fn send_rst(
        &mut self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        peer: EthernetAddress,
        seqno: u32,
        ack: Option<u32>,
    ) {
        let flags = if ack.is_some() { TcpFlags::RST | TcpFlags::ACK } else { TcpFlags::RST };
        self.stats.resets_sent += 1;
        self.push_ctl(Ctl {
            local,
            remote,
            peer,
            seq: seqno,
            ack: ack.unwrap_or(0),
            flags,
            window: 0,
            ts: None,
            syn: None,
        });
    }

    fn push_ctl(&mut self, c: Ctl) {
        if !self.ctl.push(c) {
            self.stats.drop(TcpDrop::CtlQueueFull);
        }
    }

    /// An ICMP "fragmentation needed" quoting one of our segments (`quote`: the original IPv4
    /// header and at least 8 bytes of TCP). Lowers the path MTU of the connection if the quoted
    /// sequence number is in flight (RFC 5927 §4.1).
    pub(crate) fn on_frag_needed(&mut self, now: Instant, quote: &[u8], mtu: u16) {
        let Some(&vihl) = quote.first() else { return };
        let ihl = usize::from(vihl & 0x0f) * 4;
        if vihl >> 4 != 4 || ihl < IPV4_HEADER_LEN || quote.len() < ihl + 8 || quote[9] != 6 {
            return;
        }
        let ip = |at: usize| Ipv4Addr::new(quote[at], quote[at + 1], quote[at + 2], quote[at + 3]);
        let t = &quote[ihl..];
        let local = SocketAddrV4::new(ip(12), u16::from_be_bytes([t[0], t[1]]));
        let remote = SocketAddrV4::new(ip(16), u16::from_be_bytes([t[2], t[3]]));
        let seqno = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
        let Some(i) = self.demux.get(&FlowKey::new(local, remote)) else { return };
        let i = i as usize;
        let mtu = if mtu < 68 { 576 } else { mtu.min(self.mtu) };
        let prev = self.conns[i].state;
        if self.conns[i].in_flight(seqno) && self.conns[i].set_pmtu(mtu) {
            self.stats.pmtu_updates += 1;
        }
        self.after(i, prev, now);
    }

    // ---------------------------------------------------------------------------------------
    // Transmit and timers.

    /// Whether `poll_tx` has something to send.
    pub(crate) fn wants_tx(&self) -> bool {
        !self.ctl.is_empty() || !self.txq.is_empty()
    }

    /// The earliest timer (retransmission, delayed ACK, persist, keep-alive, TIME-WAIT
    /// expiry). May be early (see the `timer` module), never late.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let conn = self.timers.peek().map(|(at, _)| Instant::from_nanos(at));
        earliest(conn, self.tw.next_timeout())
    }

    /// Runs the timers due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        while let Some(i) = self.timers.pop_due(now.as_nanos()) {
            let i = i as usize;
            if !self.live[i] {
                continue;
            }
            let prev = self.conns[i].state;
            let mut env = Tcp::env(&self.cfg, &mut self.stats, &mut self.challenge, now);
            self.conns[i].on_timer(&mut env);
            self.after(i, prev, now);
        }
        let gone = self.tw.expire(now) as u64;
        let tw = &mut self.stats.states[TcpState::TimeWait as usize];
        *tw = tw.saturating_sub(gone);
    }

    /// Fills transmit slots: stateless replies first, then connections in turn.
    pub(crate) fn poll_tx<S: TxSlots + ?Sized>(
        &mut self,
        now: Instant,
        slots: &mut S,
        env: &mut TxEnv<'_>,
    ) {
        self.now = self.now.max(now);
        while slots.remaining() > 0 {
            let Some(&c) = self.ctl.front() else { break };
            if self.write_ctl(slots, env, &c) {
                self.ctl.pop();
            } else {
                // No room in this slot for it at all: drop rather than stall the queue.
                if slots.room().is_some_and(|r| r.len() < 128) {
                    self.ctl.pop();
                    self.stats.drop(TcpDrop::CtlQueueFull);
                    continue;
                }
                break;
            }
        }
        // Round robin: a connection sends up to `TX_BURST` frames per turn and, if it has
        // more, goes to the back of the queue (`after` requeues it); a whole pass in which
        // nobody fills a slot ends the call.
        let mut idle = 0;
        while slots.remaining() > 0 && idle <= self.txq.len() {
            let Some(i) = self.txq.pop() else { break };
            let i = i as usize;
            self.conns[i].in_txq = false;
            if !self.live[i] {
                continue;
            }
            let prev = self.conns[i].state;
            let before = slots.remaining();
            self.tx_conn(now, i, slots, env);
            if slots.remaining() < before {
                idle = 0;
            } else {
                idle += 1;
            }
            self.after(i, prev, now);
        }
    }

    fn write_ctl<S: TxSlots + ?Sized>(
        &mut self,
        slots: &mut S,
        env: &mut TxEnv<'_>,
        c: &Ctl,
    ) -> bool {
        let spec = SegmentSpec {
            local: c.local,
            remote: c.remote,
            seq: c.seq,
            ack: c.ack,
            flags: c.flags,
            window: c.window,
            mss_opt: c.syn.map(|s| s.mss),
            ws_opt: c.syn.and_then(|s| s.ws),
            sack_perm: c.syn.is_some_and(|s| s.sack_perm),
            sack: SackBlocks::EMPTY,
            ts: c.ts,
            seg_size: 1,
        };
        *env.ident = env.ident.wrapping_add(1);
        let ident = *env.ident;
        let Some(room) = slots.room() else { return false };
        let Some((n, hdr, _)) =
            write_segment(room, &env.l2, Some(c.peer), ident, &spec, (&[], &[]), false)
        else {
            return false;
        };
        slots.commit(n, hdr);
        env.stats.tx_frames += 1;
        env.stats.tx_bytes += n as u64;
        self.stats.segs_out += 1;
        true
    }

    /// Sends what connection `i` has; returns whether it stopped for lack of slots (or its
    /// turn ended) with more to send.
    fn tx_conn<S: TxSlots + ?Sized>(
        &mut self,
        now: Instant,
        i: usize,
        slots: &mut S,
        env: &mut TxEnv<'_>,
    ) -> bool {
        let (rxb, txb) = (self.cfg.rx_buffer, self.cfg.tx_buffer);
        let next_hop = self.conns[i].next_hop;
        let lookup = env.neighbors.lookup(now, next_hop);
        let hdr_room = env.l2.len() + IPV4_HEADER_LEN + 60;
        let tso = self.cfg.tso;
        let mut sent = 0;
        loop {
            let (mac, pending) = match lookup {
                Lookup::Ready(mac) => (Some(mac), None),
                Lookup::Pending(entry) => (None, Some(entry)),
                Lookup::Full => (None, None),
            };
            let room = match (mac, pending) {
                (Some(_), _) => {
                    if slots.remaining() == 0 || sent >= TX_BURST {
                        return self.conns[i].wants_tx();
                    }
                    let Some(r) = slots.room() else { return true };
                    let payload_room = r.len().saturating_sub(hdr_room);
                    if tso {
                        payload_room.min(self.cfg.tso_max)
                    } else {
                        payload_room
                    }
                }
                (None, Some(entry)) => {
                    if env.neighbors.pending_room(entry) == 0 && sent > 0 {
                        return false;
                    }
                    usize::from(self.mtu).saturating_sub(IPV4_HEADER_LEN + 60)
                }
                (None, None) => {
                    if sent > 0 {
                        return false;
                    }
                    usize::from(self.mtu).saturating_sub(IPV4_HEADER_LEN + 60)
                }
            };
            let mut cenv = Tcp::env(&self.cfg, &mut self.stats, &mut self.challenge, now);
            let mem = mem_of(&mut self.rx_mem, &mut self.tx_mem, rxb, txb, i);
            let c = &mut self.conns[i];
            let Some(out) = c.next_segment(&mut cenv, &mem, room, tso && mac.is_some()) else {
                return false;
            };
            let spec = SegmentSpec {
                local: c.key.local(),
                remote: c.key.remote(),
                seq: out.seq,
                ack: out.ack,
                flags: out.flags,
                window: out.window,
                mss_opt: out.syn.map(|s| s.mss),
                ws_opt: out.syn.and_then(|s| s.ws),
                sack_perm: out.syn.is_some_and(|s| s.sack_perm),
                sack: out.sack,
                ts: out.ts,
                seg_size: out.seg_size,
            };
            let payload = c.payload(mem.tx, out.data_off, out.len);
            let ident = env.ident.wrapping_add(1);
            sent += 1;
            match (mac, pending) {
                (Some(mac), _) => {
                    let Some(buf) = slots.room() else { return true };
                    match write_segment(buf, &env.l2, Some(mac), ident, &spec, payload, tso) {
                        Some((n, hdr, segs)) => {
                            slots.commit(n, hdr);
                            *env.ident = ident.wrapping_add(segs - 1);
                            env.stats.tx_frames += 1;
                            env.stats.tx_bytes += n as u64;
                            self.stats.segs_out += u64::from(segs);
                            if segs > 1 {
                                self.stats.tso_frames += 1;
                            }
                        }
                        None => env.stats.drop(DropReason::TxTooBig),
                    }
                }
                (None, Some(entry)) => {
                    *env.ident = ident;
                    let l2 = env.l2;
                    let len = IPV4_HEADER_LEN + spec.header_len() + out.len;
                    let r = env.neighbors.enqueue_with(entry, len, |b| {
                        write_segment(b, &l2, None, ident, &spec, payload, false).is_some()
                    });
                    if let Err(reason) = r {
                        env.stats.drop(reason);
                    }
                }
                (None, None) => env.stats.drop(DropReason::ArpPendingFull),
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // The socket API.

    /// Opens a listener on `local` (the stack has checked the address) with an accept queue of
    /// `backlog` connections.
    pub(crate) fn listen(
        &mut self,
        local: SocketAddrV4,
        backlog: usize,
    ) -> Result<ListenHandle, TcpError> {
        match self.listeners.open(local, backlog.min(65535)) {
            Some(Ok(h)) => Ok(h),
            Some(Err(())) => Err(TcpError::AddrInUse),
            None => Err(TcpError::NoSpace),
        }
    }

    /// Closes a listener: connections waiting in its accept queue and its half-open ones are
    /// reset.
    pub fn close_listener(&mut self, now: Instant, h: ListenHandle) -> Result<(), TcpError> {
        let li = self.listeners.index(h).ok_or(TcpError::InvalidHandle)?;
        let mut queued = Vec::new();
        self.listeners.close(li, |c| queued.push(c as usize));
        for i in 0..self.conns.len() {
            if self.live[i] && self.conns[i].owner == Owner::Listener(li as u16) {
                let prev = self.conns[i].state;
                self.conns[i].abort();
                self.conns[i].owner = Owner::Orphan;
                self.conns[i].in_accept = false;
                self.after(i, prev, now);
            }
        }
        Ok(())
    }

    /// Takes an established connection from a listener's accept queue.
    pub fn accept(&mut self, h: ListenHandle) -> Result<TcpHandle, TcpError> {
        let li = self.listeners.index(h).ok_or(TcpError::InvalidHandle)?;
        loop {
            let Some(l) = self.listeners.get_mut(li) else { return Err(TcpError::InvalidHandle) };
            let Some(i) = l.accept.pop() else { return Err(TcpError::WouldBlock) };
            let i = i as usize;
            if !self.live[i] || self.conns[i].owner != Owner::Listener(li as u16) {
                continue;
            }
            let c = &mut self.conns[i];
            c.owner = Owner::App;
            c.in_accept = false;
            self.stats.accepts += 1;
            if !c.ev.is_empty() && !c.in_ready {
                c.in_ready = true;
                self.ready.push(i as u32);
            }
            return Ok(self.handle_of(i));
        }
    }

    /// Connections waiting in a listener's accept queue.
    pub fn accept_pending(&self, h: ListenHandle) -> Result<usize, TcpError> {
        let li = self.listeners.index(h).ok_or(TcpError::InvalidHandle)?;
        Ok(self.listeners.get(li).map_or(0, |l| l.accept.len()))
    }

    /// Starts an active open from `local` (port 0: an ephemeral port) to `remote` via
    /// `next_hop` (the stack resolved the route and the source address).
    pub(crate) fn connect(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        next_hop: Ipv4Addr,
    ) -> Result<TcpHandle, TcpError> {
        if self.free.is_empty() {
            return Err(TcpError::NoSpace);
        }
        let mut isn_floor = None;
        let key = if local.port() != 0 {
            let key = FlowKey::new(local, remote);
            if self.demux.get(&key).is_some() {
                return Err(TcpError::AddrInUse);
            }
            if let Some(t) = self.tw.lookup(&key) {
                isn_floor = Some(self.reuse_time_wait(now, t).ok_or(TcpError::AddrInUse)?);
            }
            key
        } else {
            let (k, floor) = self.ephemeral(now, local, remote)?;
            isn_floor = floor;
            k
        };
        let mut iss = self.isn(now, &key);
        if let Some(floor) = isn_floor {
            iss = floor.wrapping_add(iss & 0xffff);
        }
        let c =
            Conn::connect(now, &self.cfg, key, iss, self.ts_offset(&key), next_hop, self.mtu, 0);
        let i = self.alloc(c).ok_or(TcpError::NoSpace)?;
        if !self.demux.insert(key, i as u32) {
            self.release(i);
            return Err(TcpError::NoSpace);
        }
        self.conns[i].in_demux = true;
        self.stats.active_opens += 1;
        self.after(i, TcpState::SynSent, now);
        Ok(self.handle_of(i))
    }

    /// Whether TIME-WAIT entry `t` may be reused by `connect` (RFC 6191's conditions, Linux's
    /// `tcp_tw_reuse`: timestamps on both incarnations and at least a second since the close);
    /// removes it and returns the ISN floor.
    fn reuse_time_wait(&mut self, now: Instant, t: usize) -> Option<u32> {
        let e = *self.tw.get(t)?;
        if !(self.cfg.time_wait_reuse && e.ts_on && self.cfg.timestamps)
            || now - e.born < Duration::from_secs(1)
        {
            return None;
        }
        self.tw.remove(t);
        self.stats.time_wait_reused += 1;
        let tw = &mut self.stats.states[TcpState::TimeWait as usize];
        *tw = tw.saturating_sub(1);
        Some(e.snd_nxt.wrapping_add(65535 + 2))
    }

    /// An ephemeral port for `local` → `remote` (RFC 6056 algorithm 3: a keyed offset per
    /// destination plus a counter), skipping ports in use.
    fn ephemeral(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> Result<(FlowKey, Option<u32>), TcpError> {
        let (lo, hi) = self.cfg.ephemeral_ports;
        let n = u32::from(hi - lo) + 1;
        let w = (u64::from(u32::from(*local.ip())) << 32) | u64::from(u32::from(*remote.ip()));
        let offset = self.secret.siphash(&[w, u64::from(remote.port()), 3]) as u32;
        let mut reuse = None;
        for k in 0..n {
            let port = lo + ((offset.wrapping_add(self.port_seq).wrapping_add(k)) % n) as u16;
            if self.listeners.port_used(port) {
                continue;
            }
            let key = FlowKey::new(SocketAddrV4::new(*local.ip(), port), remote);
            if self.demux.get(&key).is_some() {
                continue;
            }
            if let Some(t) = self.tw.lookup(&key) {
                if reuse.is_none() {
                    reuse = Some((k, t, key));
                }
                continue;
            }
            self.port_seq = self.port_seq.wrapping_add(k + 1);
            return Ok((key, None));
        }
        if let Some((k, t, key)) = reuse {
            if let Some(floor) = self.reuse_time_wait(now, t) {
                self.port_seq = self.port_seq.wrapping_add(k + 1);
                return Ok((key, Some(floor)));
            }
        }
        Err(TcpError::NoSpace)
    }

    fn failure(c: &Conn) -> TcpError {
        if c.why.contains(Ready::RESET) {
            TcpError::Reset
        } else if c.why.contains(Ready::TIMED_OUT) {
            TcpError::TimedOut
        } else {
            TcpError::InvalidState
        }
    }

    fn with_conn<R>(
        &mut self,
        h: TcpHandle,
        now: Option<Instant>,
        f: impl FnOnce(&mut Conn, &mut Mem<'_>) -> R,
    ) -> Result<R, TcpError> {
        let i = self.slot(h)?;
        let (rxb, txb) = (self.cfg.rx_buffer, self.cfg.tx_buffer);
        let prev = self.conns[i].state;
        let mut mem = mem_of(&mut self.rx_mem, &mut self.tx_mem, rxb, txb, i);
        let r = f(&mut self.conns[i], &mut mem);
        let now = now.unwrap_or(self.now);
        self.after(i, prev, now);
        Ok(r)
    }

    /// Queues as much of `data` as the send buffer takes; returns how many bytes (the rest is
    /// back-pressure: a `WRITABLE` event follows when space frees). `WouldBlock` if none fit.
    pub fn write(&mut self, h: TcpHandle, data: &[u8]) -> Result<usize, TcpError> {
        self.with_conn(h, None, |c, mem| {
            if !c.state.may_send() || c.fin_queued() {
                return Err(Tcp::failure(c));
            }
            let n = c.write(mem, data);
            if n == 0 && !data.is_empty() {
                return Err(TcpError::WouldBlock);
            }
            Ok(n)
        })?
    }

    /// Lends the next contiguous free part of the send buffer to `f`, which writes a prefix
    /// and returns its length (zero-copy write); returns that length.
    pub fn write_with(
        &mut self,
        h: TcpHandle,
        f: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<usize, TcpError> {
        self.with_conn(h, None, |c, mem| {
            if !c.state.may_send() || c.fin_queued() {
                return Err(Tcp::failure(c));
            }
            if c.send_space(mem.tx.len()) == 0 {
                c.note_write_blocked();
                return Err(TcpError::WouldBlock);
            }
            Ok(c.write_with(mem, f))
        })?
    }

    /// Free bytes in the send buffer.
    pub fn send_space(&self, h: TcpHandle) -> Result<usize, TcpError> {
        let i = self.slot(h)?;
        Ok(self.conns[i].send_space(self.cfg.tx_buffer))
    }

    /// Reads in-order bytes into `buf`. `Ok(0)` means end of stream (the peer closed and
    /// everything was read); `WouldBlock` means nothing yet.
    pub fn read(&mut self, h: TcpHandle, buf: &mut [u8]) -> Result<usize, TcpError> {
        self.with_conn(h, None, |c, mem| {
            let n = c.read(mem, buf);
            Tcp::read_result(c, n, buf.is_empty())
        })?
    }

    /// Lends the contiguous in-order bytes to `f` (zero copy, borrowed from the receive
    /// buffer); `f` returns how many it consumed. The same results as [`read`](Self::read).
    pub fn read_with(
        &mut self,
        h: TcpHandle,
        f: impl FnOnce(&[u8]) -> usize,
    ) -> Result<usize, TcpError> {
        self.with_conn(h, None, |c, mem| {
            let avail = c.readable();
            let n = c.read_with(mem, f);
            if avail > 0 {
                return Ok(n);
            }
            Tcp::read_result(c, n, false)
        })?
    }

    fn read_result(c: &Conn, n: usize, empty: bool) -> Result<usize, TcpError> {
        if n > 0 || empty {
            return Ok(n);
        }
        if c.why.intersects(Ready::RESET | Ready::TIMED_OUT) {
            return Err(Tcp::failure(c));
        }
        if c.peer_closed() || c.state == TcpState::Closed {
            return Ok(0);
        }
        Err(TcpError::WouldBlock)
    }

    /// In-order bytes waiting to be read.
    pub fn readable(&self, h: TcpHandle) -> Result<usize, TcpError> {
        let i = self.slot(h)?;
        Ok(self.conns[i].readable())
    }

    /// Shuts down the sending side: FIN after the queued data (the connection stays open for
    /// reading).
    pub fn shutdown(&mut self, h: TcpHandle) -> Result<(), TcpError> {
        self.with_conn(h, None, |c, _| c.shutdown())
    }

    /// Closes the handle. A clean close finishes in the background (FIN, TIME-WAIT); unread
    /// received data makes it an abort with RST (RFC 9293 §3.10.4, RFC 2525 §2.17). The handle
    /// is invalid afterwards.
    pub fn close(&mut self, now: Instant, h: TcpHandle) -> Result<(), TcpError> {
        let i = self.slot(h)?;
        let prev = self.conns[i].state;
        let c = &mut self.conns[i];
        match c.state {
            TcpState::Closed | TcpState::SynSent => {
                c.state = TcpState::Closed;
                c.rst_pending = false;
            }
            _ if c.readable() > 0 => c.abort(),
            _ => {
                c.shutdown();
                if c.state == TcpState::FinWait2 {
                    c.set_fin_timeout(now + self.cfg.fin_timeout);
                }
            }
        }
        c.set_owner(Owner::Orphan);
        c.ev = Ready::empty();
        self.after(i, prev, now);
        Ok(())
    }

    /// Aborts: RST to the peer (in synchronized states), the handle is invalid afterwards.
    pub fn abort(&mut self, now: Instant, h: TcpHandle) -> Result<(), TcpError> {
        let i = self.slot(h)?;
        let prev = self.conns[i].state;
        let c = &mut self.conns[i];
        c.abort();
        c.set_owner(Owner::Orphan);
        self.after(i, prev, now);
        Ok(())
    }

    /// The next connection or listener event, if any (see the module documentation).
    pub fn poll_event(&mut self) -> Option<TcpEvent> {
        while let Some(e) = self.ready.pop() {
            if e & LISTENER_TAG != 0 {
                let li = (e & !LISTENER_TAG) as usize;
                let h = self.listeners.handle(li);
                let Some(l) = self.listeners.get_mut(li) else { continue };
                l.in_ready = false;
                if std::mem::take(&mut l.ev) && !l.accept.is_empty() {
                    return Some(TcpEvent::Acceptable(h));
                }
                continue;
            }
            let i = e as usize;
            let Some(c) = self.conns.get_mut(i) else { continue };
            c.in_ready = false;
            if !self.live[i] || c.owner != Owner::App {
                continue;
            }
            let ready = core::mem::take(&mut c.ev);
            if !ready.is_empty() {
                return Some(TcpEvent::Conn { socket: self.handle_of(i), ready });
            }
        }
        None
    }

    /// The state of a connection.
    pub fn state(&self, h: TcpHandle) -> Result<TcpState, TcpError> {
        let i = self.slot(h)?;
        Ok(self.conns[i].state)
    }

    /// A snapshot of a connection.
    pub fn info(&self, h: TcpHandle) -> Result<TcpInfo, TcpError> {
        let i = self.slot(h)?;
        let c = &self.conns[i];
        let (ts, sack, wscale) = c.options();
        let (una, _, max) = c.snd();
        Ok(TcpInfo {
            state: c.state,
            local: c.key.local(),
            remote: c.key.remote(),
            mss: c.mss(),
            cwnd: c.cc.cwnd(),
            ssthresh: c.cc.ssthresh(),
            snd_wnd: c.snd_wnd(),
            unacked: seq::dist(una, max),
            unsent: c.unsent(),
            readable: c.readable() as u32,
            srtt: c.rtt().srtt(),
            rto: c.rtt().rto(),
            rttvar: c.rtt().rttvar(),
            ts,
            wscale,
            sack,
            congestion: c.cc.algorithm(),
            stats: c.stats,
        })
    }

    /// Disables (or re-enables) Nagle's algorithm.
    pub fn set_nodelay(&mut self, h: TcpHandle, nodelay: bool) -> Result<(), TcpError> {
        self.with_conn(h, None, |c, _| c.nodelay = nodelay)
    }

    /// Turns keep-alive on (`Some`) or off.
    pub fn set_keepalive(
        &mut self,
        now: Instant,
        h: TcpHandle,
        ka: Option<Keepalive>,
    ) -> Result<(), TcpError> {
        self.with_conn(h, Some(now), |c, _| c.set_keepalive(now, ka))
    }
}

#[cfg(test)]
mod tests;
