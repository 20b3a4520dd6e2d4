//! # The ARP neighbour cache and the queue of datagrams awaiting resolution
//!
//! What it is: [`NeighborCache`], the IPv4 → Ethernet mapping of one interface with the
//! neighbour-unreachability states of RFC 1122 §2.3.2.1 as Linux implements them for ARP
//! (`INCOMPLETE → REACHABLE → STALE → PROBE`), and a pool of datagrams waiting for a
//! resolution to finish.
//!
//! What it owns:
//! - a set-associative table (buckets of [`WAYS`] entries, indexed by a hash of the address),
//!   so a lookup touches one cache line or two, never the whole table;
//! - entry states: `Incomplete` (broadcast requests every `retrans_time`, up to
//!   `mcast_probes`, then the entry fails and its queue is dropped, counted as
//!   `ArpFailed`); `Reachable` until `reachable_time` after the last confirmation (a reply);
//!   then `Stale` (still used); using a stale entry starts `Probe`: after
//!   `delay_first_probe`, up to `ucast_probes` unicast requests `retrans_time` apart; a reply
//!   makes it reachable again, silence removes it. `Static` entries come from the
//!   configuration and never change or age;
//! - aging: stale entries unused for `gc_stale_time` are removed when a timer scan or an
//!   insertion finds them, and a full bucket evicts its least recently used entry that is
//!   neither static nor holding queued datagrams;
//! - the pending pool: `pending_slots` buffers of `slot_size` bytes, each holding one IPv4
//!   packet (header included, at most one MTU: larger datagrams are fragmented before they
//!   are queued), linked per neighbour, at most `pending_per_neighbor` per neighbour. A full
//!   queue drops the new datagram (counted `ArpPendingFull`).
//!
//! What it never does: send anything itself (it queues [`ArpRequestOut`] records that the
//! stack turns into frames), allocate after construction, or create entries from unsolicited
//! replies (Linux's `arp_accept = 0`): only our own lookups and requests aimed at one of our
//! addresses create entries.
//!
//! Invariants: an entry with queued datagrams is `Incomplete` or has just been resolved and is
//! on the ready list; such an entry is never evicted. Every pool slot is either free or on
//! exactly one entry's queue. `next_timeout` is never later than the earliest retransmission
//! deadline.
//!
//! References: RFC 826 (ARP, the merge rule), RFC 1122 §2.3.2 (cache, flooding limits: at
//! most one request per second per address), RFC 5227 (probes and announcements), Linux
//! `net/core/neighbour.c` and `Documentation/networking/ip-sysctl.rst` (`neigh/*` defaults).

use core::time::Duration;
use std::net::Ipv4Addr;

use crate::ring::FixedRing;
use crate::stats::{DropReason, Stats};
use crate::time::{earliest, Instant};
use crate::wire::EthernetAddress;

/// Entries per bucket.
pub const WAYS: usize = 4;

const NIL: u16 = u16::MAX;

/// Tunables of the ARP cache; the defaults are Linux's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpConfig {
    /// Entries in the cache (rounded up to a power-of-two number of buckets of [`WAYS`]).
    pub cache_size: usize,
    /// How long a confirmed entry stays reachable (Linux: `base_reachable_time`, 30 s).
    pub reachable_time: Duration,
    /// Wait before the first unicast probe of a stale entry in use (`delay_first_probe_time`).
    pub delay_first_probe: Duration,
    /// Interval between requests for one address (`retrans_time`, 1 s).
    pub retrans_time: Duration,
    /// Broadcast requests before an unresolved address fails (`mcast_solicit`, 3).
    pub mcast_probes: u8,
    /// Unicast probes before a stale entry is removed (`ucast_solicit`, 3).
    pub ucast_probes: u8,
    /// Idle time after which a stale entry may be removed (`gc_stale_time`, 60 s).
    pub gc_stale_time: Duration,
    /// Datagrams waiting for resolution, all neighbours together.
    pub pending_slots: usize,
    /// Datagrams waiting for one neighbour.
    pub pending_per_neighbor: usize,
    /// Gratuitous announcements of each address on start (RFC 5227 `ANNOUNCE_NUM`, 2).
    pub announce_count: u8,
    /// Interval between announcements (RFC 5227 `ANNOUNCE_INTERVAL`, 2 s).
    pub announce_interval: Duration,
}

impl Default for ArpConfig {
    fn default() -> ArpConfig {
        ArpConfig {
            cache_size: 256,
            reachable_time: Duration::from_secs(30),
            delay_first_probe: Duration::from_secs(5),
            retrans_time: Duration::from_secs(1),
            mcast_probes: 3,
            ucast_probes: 3,
            gc_stale_time: Duration::from_secs(60),
            pending_slots: 64,
            pending_per_neighbor: 16,
            announce_count: 2,
            announce_interval: Duration::from_secs(2),
        }
    }
}

/// State of a neighbour entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NeighborState {
    /// Unused slot.
    #[default]
    Free,
    /// Resolution in progress; datagrams wait.
    Incomplete,
    /// Confirmed recently.
    Reachable,
    /// Not confirmed recently; still used.
    Stale,
    /// Stale and in use: being probed with unicast requests.
    Probe,
    /// From the configuration; never ages.
    Static,
}

/// A request the stack should send: broadcast for resolution, unicast for a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRequestOut {
    /// Address to resolve.
    pub target: Ipv4Addr,
    /// Destination MAC of a unicast probe; `None` for broadcast.
    pub unicast: Option<EthernetAddress>,
}

impl Default for ArpRequestOut {
    fn default() -> ArpRequestOut {
        ArpRequestOut { target: Ipv4Addr::UNSPECIFIED, unicast: None }
    }
}

/// Result of a lookup for transmit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Send now to this address.
    Ready(EthernetAddress),
    /// Resolution in progress: queue the datagram on entry `idx`.
    Pending(usize),
    /// No entry could be made (bucket full of static or busy entries).
    Full,
}

/// What an ARP packet tells us about its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Learn {
    /// A reply to us: the sender is confirmed reachable (creates nothing).
    Reply,
    /// A request aimed at one of our addresses: create or update the entry as stale.
    RequestForUs,
    /// Any other packet: update an existing entry (RFC 826 merge), create nothing.
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    ip: Ipv4Addr,
    mac: EthernetAddress,
    state: NeighborState,
    probes: u8,
    /// Retransmission deadline (Incomplete, Probe) or end of reachability (Reachable).
    deadline: Instant,
    used: Instant,
    q_head: u16,
    q_tail: u16,
    q_len: u16,
    on_ready: bool,
}

impl Default for Entry {
    fn default() -> Entry {
        Entry {
            ip: Ipv4Addr::UNSPECIFIED,
            mac: EthernetAddress::default(),
            state: NeighborState::Free,
            probes: 0,
            deadline: Instant::ZERO,
            used: Instant::ZERO,
            q_head: NIL,
            q_tail: NIL,
            q_len: 0,
            on_ready: false,
        }
    }
}

/// A snapshot of one entry, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborInfo {
    /// The address.
    pub ip: Ipv4Addr,
    /// Its link-layer address (zero while incomplete).
    pub mac: EthernetAddress,
    /// Its state.
    pub state: NeighborState,
    /// Datagrams waiting for it.
    pub queued: usize,
}

/// The ARP cache of one interface (see the module documentation).
#[derive(Debug)]
pub struct NeighborCache {
    cfg: ArpConfig,
    entries: Box<[Entry]>,
    bucket_mask: usize,
    requests: FixedRing<ArpRequestOut>,
    ready: FixedRing<u16>,
    next_timer: Option<Instant>,
    // The pending pool.
    slot_size: usize,
    pool: Box<[u8]>,
    pool_len: Box<[u16]>,
    pool_next: Box<[u16]>,
    free_head: u16,
    queued: usize,
}

impl NeighborCache {
    /// A cache with the given tunables whose pending pool holds IPv4 packets of up to
    /// `slot_size` bytes (the interface MTU).
    pub fn new(cfg: ArpConfig, slot_size: usize) -> NeighborCache {
        let buckets = cfg.cache_size.div_ceil(WAYS).max(1).next_power_of_two();
        let slots = cfg.pending_slots.min(usize::from(NIL) - 1);
        let pool_next: Box<[u16]> =
            (0..slots).map(|i| if i + 1 < slots { (i + 1) as u16 } else { NIL }).collect();
        NeighborCache {
            cfg,
            entries: vec![Entry::default(); buckets * WAYS].into_boxed_slice(),
            bucket_mask: buckets - 1,
            requests: FixedRing::new(64),
            ready: FixedRing::new(buckets * WAYS),
            next_timer: None,
            slot_size,
            pool: vec![0u8; slots * slot_size].into_boxed_slice(),
            pool_len: vec![0u16; slots].into_boxed_slice(),
            pool_next,
            free_head: if slots > 0 { 0 } else { NIL },
            queued: 0,
        }
    }

    /// The tunables.
    pub fn config(&self) -> &ArpConfig {
        &self.cfg
    }

    /// Entries the table can hold.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Datagrams waiting for resolution, all neighbours together.
    pub fn queued(&self) -> usize {
        self.queued
    }

    fn bucket(&self, ip: Ipv4Addr) -> core::ops::Range<usize> {
        let h = (ip.to_bits().wrapping_mul(0x9e37_79b1) >> 16) as usize & self.bucket_mask;
        h * WAYS..h * WAYS + WAYS
    }

    fn find(&self, ip: Ipv4Addr) -> Option<usize> {
        self.bucket(ip)
            .find(|&i| self.entries[i].state != NeighborState::Free && self.entries[i].ip == ip)
    }

    /// The entry for `ip`, if any.
    pub fn get(&self, ip: Ipv4Addr) -> Option<NeighborInfo> {
        self.find(ip).map(|i| {
            let e = &self.entries[i];
            NeighborInfo { ip: e.ip, mac: e.mac, state: e.state, queued: usize::from(e.q_len) }
        })
    }

    /// Every entry in use, for metrics and tests.
    pub fn iter(&self) -> impl Iterator<Item = NeighborInfo> + '_ {
        self.entries.iter().filter(|e| e.state != NeighborState::Free).map(|e| NeighborInfo {
            ip: e.ip,
            mac: e.mac,
            state: e.state,
            queued: usize::from(e.q_len),
        })
    }

    /// The entries a datagram may be sent to at `now` without waiting: static ones, reachable
    /// ones within `reachable_time` of their last confirmation, and those being probed (still
    /// used while the probe runs, as Linux uses `NUD_PROBE`). Incomplete, stale (unconfirmed
    /// for longer than `reachable_time` and not in use) and free entries are not listed. For
    /// mirrors of the cache (the XDP fast path's neighbour map), never the packet path.
    pub fn usable(&self, now: Instant) -> impl Iterator<Item = (Ipv4Addr, EthernetAddress)> + '_ {
        self.entries
            .iter()
            .filter(move |e| match e.state {
                NeighborState::Static | NeighborState::Probe => true,
                NeighborState::Reachable => now < e.deadline,
                _ => false,
            })
            .map(|e| (e.ip, e.mac))
    }

    /// Adds a static entry. `false` if its bucket is full of static entries.
    pub fn add_static(&mut self, ip: Ipv4Addr, mac: EthernetAddress) -> bool {
        let i = match self.find(ip).or_else(|| self.alloc(ip, Instant::ZERO)) {
            Some(i) => i,
            None => return false,
        };
        let e = &mut self.entries[i];
        e.ip = ip;
        e.mac = mac;
        e.state = NeighborState::Static;
        self.ready_if_queued(i);
        true
    }

    /// A free or evictable slot of `ip`'s bucket, reset to `Free` with the address set.
    fn alloc(&mut self, ip: Ipv4Addr, now: Instant) -> Option<usize> {
        let gc = self.cfg.gc_stale_time;
        let mut victim: Option<usize> = None;
        for i in self.bucket(ip) {
            let e = &self.entries[i];
            let evictable = match e.state {
                NeighborState::Free => return Some(self.reset(i, ip)),
                NeighborState::Static | NeighborState::Incomplete => false,
                _ => e.q_len == 0 && !e.on_ready,
            };
            if !evictable {
                continue;
            }
            if e.state == NeighborState::Stale && now.saturating_duration_since(e.used) >= gc {
                return Some(self.reset(i, ip));
            }
            if victim.is_none_or(|v| e.used < self.entries[v].used) {
                victim = Some(i);
            }
        }
        victim.map(|i| self.reset(i, ip))
    }

    fn reset(&mut self, i: usize, ip: Ipv4Addr) -> usize {
        self.entries[i] = Entry { ip, q_head: NIL, q_tail: NIL, ..Entry::default() };
        i
    }

    /// Looks `ip` up for transmit at `now`, starting resolution or a probe as needed.
    pub(crate) fn lookup(&mut self, now: Instant, ip: Ipv4Addr) -> Lookup {
        let i = match self.find(ip) {
            Some(i) => i,
            None => {
                let Some(i) = self.alloc(ip, now) else { return Lookup::Full };
                let e = &mut self.entries[i];
                e.state = NeighborState::Incomplete;
                e.probes = 1;
                e.used = now;
                e.deadline = now + self.cfg.retrans_time;
                let deadline = e.deadline;
                self.requests.push(ArpRequestOut { target: ip, unicast: None });
                self.arm(deadline);
                return Lookup::Pending(i);
            }
        };
        let cfg = self.cfg;
        let e = &mut self.entries[i];
        e.used = now;
        match e.state {
            NeighborState::Incomplete => Lookup::Pending(i),
            NeighborState::Static | NeighborState::Probe => Lookup::Ready(e.mac),
            NeighborState::Reachable if now < e.deadline => Lookup::Ready(e.mac),
            NeighborState::Reachable | NeighborState::Stale => {
                e.state = NeighborState::Probe;
                e.probes = 0;
                e.deadline = now + cfg.delay_first_probe;
                let (mac, d) = (e.mac, e.deadline);
                self.arm(d);
                Lookup::Ready(mac)
            }
            NeighborState::Free => Lookup::Full,
        }
    }

    fn arm(&mut self, deadline: Instant) {
        self.next_timer = earliest(self.next_timer, Some(deadline));
    }

    /// Updates the cache from an ARP packet's sender fields.
    pub(crate) fn learn(&mut self, now: Instant, ip: Ipv4Addr, mac: EthernetAddress, how: Learn) {
        let i = match (self.find(ip), how) {
            (Some(i), _) => i,
            (None, Learn::RequestForUs) => match self.alloc(ip, now) {
                Some(i) => {
                    self.entries[i].used = now;
                    i
                }
                None => return,
            },
            (None, _) => return,
        };
        let reachable = self.cfg.reachable_time;
        let e = &mut self.entries[i];
        if e.state == NeighborState::Static {
            return;
        }
        let changed = e.mac != mac;
        e.mac = mac;
        e.state = match how {
            Learn::Reply => {
                e.deadline = now + reachable;
                NeighborState::Reachable
            }
            _ if changed || matches!(e.state, NeighborState::Free | NeighborState::Incomplete) => {
                NeighborState::Stale
            }
            _ => e.state,
        };
        self.ready_if_queued(i);
    }

    fn ready_if_queued(&mut self, i: usize) {
        let e = &mut self.entries[i];
        if e.q_len > 0 && !e.on_ready && e.state != NeighborState::Incomplete {
            e.on_ready = true;
            self.ready.push(i as u16);
        }
    }

    /// How many more packets entry `idx` can queue (its own bound and the pool's).
    pub(crate) fn pending_room(&self, idx: usize) -> usize {
        match self.entries.get(idx) {
            Some(e) if e.state == NeighborState::Incomplete => {
                let own = self.cfg.pending_per_neighbor.saturating_sub(usize::from(e.q_len));
                own.min(self.pool_len.len() - self.queued)
            }
            _ => 0,
        }
    }

    /// Queues a packet of `len` bytes on entry `idx`, written by `write` into the pool slot
    /// (which returns `false` to give the slot back).
    pub(crate) fn enqueue_with(
        &mut self,
        idx: usize,
        len: usize,
        write: impl FnOnce(&mut [u8]) -> bool,
    ) -> Result<(), DropReason> {
        if self.pending_room(idx) == 0 {
            return Err(DropReason::ArpPendingFull);
        }
        if len > self.slot_size {
            return Err(DropReason::TxTooBig);
        }
        let s = self.free_head;
        if s == NIL {
            return Err(DropReason::ArpPendingFull);
        }
        let si = usize::from(s);
        let at = si * self.slot_size;
        if !write(&mut self.pool[at..at + len]) {
            return Err(DropReason::TxTooBig);
        }
        self.free_head = self.pool_next[si];
        self.pool_next[si] = NIL;
        self.pool_len[si] = len as u16;
        let e = &mut self.entries[idx];
        if e.q_tail == NIL {
            e.q_head = s;
        } else {
            self.pool_next[usize::from(e.q_tail)] = s;
        }
        e.q_tail = s;
        e.q_len += 1;
        self.queued += 1;
        Ok(())
    }

    /// Copies `packet` onto entry `idx`'s queue.
    #[cfg(test)]
    pub(crate) fn enqueue(&mut self, idx: usize, packet: &[u8]) -> Result<(), DropReason> {
        self.enqueue_with(idx, packet.len(), |out| {
            out.copy_from_slice(packet);
            true
        })
    }

    /// The oldest queued packet of the first resolved neighbour: its MAC, and the packet.
    pub(crate) fn ready_front(&self) -> Option<(EthernetAddress, &[u8])> {
        let &i = self.ready.front()?;
        let e = &self.entries[usize::from(i)];
        let s = usize::from(e.q_head);
        if e.q_head == NIL {
            return Some((e.mac, &[]));
        }
        let len = usize::from(self.pool_len[s]);
        Some((e.mac, &self.pool[s * self.slot_size..s * self.slot_size + len]))
    }

    /// Removes the packet `ready_front` returned.
    pub(crate) fn ready_pop(&mut self) {
        let Some(&i) = self.ready.front() else { return };
        let i = usize::from(i);
        let popped = self.pop_queue(i);
        if !popped || self.entries[i].q_len == 0 {
            self.entries[i].on_ready = false;
            self.ready.pop();
        }
    }

    fn pop_queue(&mut self, i: usize) -> bool {
        let e = &mut self.entries[i];
        let s = e.q_head;
        if s == NIL {
            return false;
        }
        let si = usize::from(s);
        e.q_head = self.pool_next[si];
        if e.q_head == NIL {
            e.q_tail = NIL;
        }
        e.q_len -= 1;
        self.pool_next[si] = self.free_head;
        self.free_head = s;
        self.queued -= 1;
        true
    }

    /// The next request to send.
    pub(crate) fn pop_request(&mut self) -> Option<ArpRequestOut> {
        self.requests.pop()
    }

    /// The next request to send, left in the queue.
    pub(crate) fn peek_request(&self) -> Option<ArpRequestOut> {
        self.requests.front().copied()
    }

    /// When the cache next has timer work (a retransmission or probe is due).
    pub fn next_timeout(&self) -> Option<Instant> {
        self.next_timer
    }

    /// Retransmits requests, fails unresolved entries and ages stale ones.
    pub(crate) fn on_timeout(&mut self, now: Instant, stats: &mut Stats) {
        if self.next_timer.is_none_or(|t| t > now) {
            return;
        }
        let cfg = self.cfg;
        let mut next = None;
        for i in 0..self.entries.len() {
            let e = &mut self.entries[i];
            match e.state {
                NeighborState::Incomplete if e.deadline <= now => {
                    if e.probes < cfg.mcast_probes {
                        e.probes += 1;
                        e.deadline = now + cfg.retrans_time;
                        next = earliest(next, Some(e.deadline));
                        self.requests.push(ArpRequestOut { target: e.ip, unicast: None });
                    } else {
                        while self.pop_queue(i) {
                            stats.drop(DropReason::ArpFailed);
                        }
                        self.entries[i].state = NeighborState::Free;
                    }
                }
                NeighborState::Probe if e.deadline <= now => {
                    if e.probes < cfg.ucast_probes {
                        e.probes += 1;
                        e.deadline = now + cfg.retrans_time;
                        next = earliest(next, Some(e.deadline));
                        self.requests.push(ArpRequestOut { target: e.ip, unicast: Some(e.mac) });
                    } else if e.q_len == 0 && !e.on_ready {
                        e.state = NeighborState::Free;
                    }
                }
                NeighborState::Incomplete | NeighborState::Probe => {
                    next = earliest(next, Some(e.deadline));
                }
                NeighborState::Reachable if e.deadline <= now => e.state = NeighborState::Stale,
                NeighborState::Stale
                    if now.saturating_duration_since(e.used) >= cfg.gc_stale_time
                        && e.q_len == 0
                        && !e.on_ready =>
                {
                    e.state = NeighborState::Free
                }
                _ => {}
            }
        }
        self.next_timer = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 9]);

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    fn secs(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    #[test]
    fn resolution_queues_then_releases_in_order() {
        let mut c = NeighborCache::new(ArpConfig::default(), 64);
        let Lookup::Pending(i) = c.lookup(secs(1), ip(2)) else { panic!() };
        assert_eq!(c.pop_request(), Some(ArpRequestOut { target: ip(2), unicast: None }));
        c.enqueue(i, b"first").unwrap();
        c.enqueue(i, b"second").unwrap();
        assert_eq!(c.lookup(secs(1), ip(2)), Lookup::Pending(i));
        assert!(c.ready_front().is_none());
        c.learn(secs(1), ip(2), MAC, Learn::Reply);
        assert_eq!(c.ready_front(), Some((MAC, &b"first"[..])));
        c.ready_pop();
        assert_eq!(c.ready_front(), Some((MAC, &b"second"[..])));
        c.ready_pop();
        assert!(c.ready_front().is_none());
        assert_eq!(c.queued(), 0);
        assert_eq!(c.lookup(secs(2), ip(2)), Lookup::Ready(MAC));
    }

    #[test]
    fn unresolved_entry_retries_then_fails_and_counts_its_queue() {
        let mut c = NeighborCache::new(ArpConfig::default(), 64);
        let mut stats = Stats::default();
        let Lookup::Pending(i) = c.lookup(secs(0), ip(3)) else { panic!() };
        c.enqueue(i, b"x").unwrap();
        let mut sent = 1;
        c.pop_request();
        while let Some(t) = c.next_timeout() {
            c.on_timeout(t, &mut stats);
            while c.pop_request().is_some() {
                sent += 1;
            }
        }
        assert_eq!(sent, 3, "mcast_probes requests, 1 s apart");
        assert_eq!(stats.drops(DropReason::ArpFailed), 1);
        assert!(c.get(ip(3)).is_none());
        assert_eq!(c.queued(), 0);
    }

    #[test]
    fn pending_bounds_per_neighbor_and_global() {
        let cfg = ArpConfig { pending_slots: 3, pending_per_neighbor: 2, ..ArpConfig::default() };
        let mut c = NeighborCache::new(cfg, 8);
        let Lookup::Pending(a) = c.lookup(secs(0), ip(2)) else { panic!() };
        let Lookup::Pending(b) = c.lookup(secs(0), ip(3)) else { panic!() };
        assert!(c.enqueue(a, b"1").is_ok() && c.enqueue(a, b"2").is_ok());
        assert_eq!(c.enqueue(a, b"3"), Err(DropReason::ArpPendingFull));
        assert_eq!(c.enqueue(b, b"too long!"), Err(DropReason::TxTooBig));
        assert_eq!(c.pending_room(b), 1);
        assert!(c.enqueue(b, b"4").is_ok());
        assert_eq!(c.enqueue(b, b"5"), Err(DropReason::ArpPendingFull), "pool exhausted");
    }

    #[test]
    fn usable_lists_static_confirmed_and_probed_entries_only() {
        let mut c = NeighborCache::new(ArpConfig::default(), 64);
        let list = |c: &NeighborCache, t| {
            let mut v: Vec<Ipv4Addr> = c.usable(t).map(|(ip, _)| ip).collect();
            v.sort();
            v
        };
        assert!(c.add_static(ip(1), MAC));
        c.learn(secs(0), ip(2), MAC, Learn::RequestForUs); // stale: never confirmed
        let Lookup::Pending(_) = c.lookup(secs(0), ip(3)) else { panic!() };
        c.learn(secs(0), ip(3), MAC, Learn::Reply); // reachable for 30 s
        let Lookup::Pending(_) = c.lookup(secs(0), ip(4)) else { panic!() }; // incomplete
        assert_eq!(list(&c, secs(1)), vec![ip(1), ip(3)]);
        // Past reachable_time: no longer listed, until a use starts a probe.
        assert_eq!(list(&c, secs(31)), vec![ip(1)]);
        assert_eq!(c.lookup(secs(31), ip(3)), Lookup::Ready(MAC));
        assert_eq!(c.get(ip(3)).unwrap().state, NeighborState::Probe);
        assert_eq!(list(&c, secs(31)), vec![ip(1), ip(3)]);
    }

    #[test]
    fn reachable_goes_stale_then_probes_then_dies() {
        let mut c = NeighborCache::new(ArpConfig::default(), 64);
        let mut stats = Stats::default();
        c.learn(secs(0), ip(4), MAC, Learn::RequestForUs);
        assert_eq!(c.get(ip(4)).unwrap().state, NeighborState::Stale);
        c.learn(secs(0), ip(4), MAC, Learn::Reply);
        assert_eq!(c.lookup(secs(10), ip(4)), Lookup::Ready(MAC));
        assert_eq!(c.get(ip(4)).unwrap().state, NeighborState::Reachable);
        // 30 s later it is stale: still used, but a probe is scheduled after 5 s.
        assert_eq!(c.lookup(secs(31), ip(4)), Lookup::Ready(MAC));
        assert_eq!(c.get(ip(4)).unwrap().state, NeighborState::Probe);
        assert_eq!(c.next_timeout(), Some(secs(36)));
        let mut probes = 0;
        while let Some(t) = c.next_timeout() {
            c.on_timeout(t, &mut stats);
            while let Some(r) = c.pop_request() {
                assert_eq!(r.unicast, Some(MAC));
                probes += 1;
            }
        }
        assert_eq!(probes, 3);
        assert!(c.get(ip(4)).is_none());
    }

    #[test]
    fn a_reply_during_probe_confirms() {
        let mut c = NeighborCache::new(ArpConfig::default(), 64);
        let mut stats = Stats::default();
        c.learn(secs(0), ip(4), MAC, Learn::RequestForUs);
        c.lookup(secs(1), ip(4));
        c.on_timeout(secs(6), &mut stats);
        assert!(c.pop_request().is_some());
        c.learn(secs(6), ip(4), MAC, Learn::Reply);
        assert_eq!(c.get(ip(4)).unwrap().state, NeighborState::Reachable);
    }

    #[test]
    fn unsolicited_packets_create_nothing_and_static_entries_never_change() {
        let mut c = NeighborCache::new(ArpConfig::default(), 64);
        c.learn(secs(0), ip(5), MAC, Learn::Reply);
        c.learn(secs(0), ip(5), MAC, Learn::Other);
        assert!(c.get(ip(5)).is_none());
        assert!(c.add_static(ip(6), MAC));
        c.learn(secs(0), ip(6), EthernetAddress([2, 0, 0, 0, 0, 7]), Learn::Reply);
        assert_eq!(c.get(ip(6)).unwrap().mac, MAC);
        assert_eq!(c.lookup(secs(1000), ip(6)), Lookup::Ready(MAC));
        assert_eq!(c.get(ip(6)).unwrap().state, NeighborState::Static);
    }

    #[test]
    fn full_bucket_evicts_least_recently_used_but_never_busy_entries() {
        let cfg = ArpConfig { cache_size: 4, ..ArpConfig::default() };
        let mut c = NeighborCache::new(cfg, 64);
        assert_eq!(c.capacity(), 4);
        for n in 1..=4 {
            c.learn(secs(u64::from(n)), ip(n), MAC, Learn::RequestForUs);
        }
        c.learn(secs(10), ip(9), MAC, Learn::RequestForUs);
        assert!(c.get(ip(1)).is_none(), "oldest evicted");
        assert!(c.get(ip(9)).is_some());
        // Four unresolved entries with queues: nothing can be evicted.
        let mut c = NeighborCache::new(cfg, 64);
        for n in 1..=4 {
            let Lookup::Pending(i) = c.lookup(secs(0), ip(n)) else { panic!() };
            c.enqueue(i, b"q").unwrap();
        }
        assert_eq!(c.lookup(secs(0), ip(9)), Lookup::Full);
    }
}
