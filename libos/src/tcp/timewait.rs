//! # TIME-WAIT entries
//!
//! What it is: [`TimeWait`], the compact remains of connections that closed first on our side
//! and now wait 2 MSL (RFC 9293 §3.6.1) so that late segments of the old incarnation cannot
//! corrupt a new one: the 4-tuple, the final sequence numbers, the window and the timestamp
//! state, about 48 bytes instead of a full connection with its buffers. What a segment for an
//! entry means ([`TimeWait::on_segment`]): a retransmitted FIN is acknowledged again and
//! restarts the wait; an RST is ignored (RFC 1337); a new SYN reopens the 4-tuple when RFC
//! 6191's conditions hold (a higher timestamp, or without timestamps a higher sequence number);
//! anything else gets an ACK or is dropped.
//!
//! What it owns: at most `max` entries, their own [`FlowMap`] for O(1) lookup, and a FIFO of
//! expiry times (all waits have the same length, so arrival order is expiry order; a restarted
//! wait is re-queued when its old turn comes).
//!
//! What it never does: allocate after construction or hold more than `max` entries: when full,
//! the oldest entry is dropped early (counted), the choice of Linux's `tcp_max_tw_buckets` being
//! to skip TIME-WAIT altogether; dropping the oldest keeps the youngest protected instead.
//!
//! Invariants: an entry is in the map iff it is active; each active entry has exactly one live
//! FIFO record (older records of its slot carry a stale stamp and are skipped).
//!
//! References: RFC 9293 §3.6.1 and §3.10.7.4 (TIME-WAIT), RFC 1337, RFC 6191, RFC 7323 §5
//! (PAWS), RFC 5961.

use core::time::Duration;

use super::hash::Secret;
use super::seq;
use super::table::{FlowKey, FlowMap};
use crate::ring::FixedRing;
use crate::time::Instant;
use crate::wire::TcpFlags;

/// The remains of one connection (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TwEntry {
    pub key: FlowKey,
    pub snd_nxt: u32,
    pub rcv_nxt: u32,
    pub window: u16,
    pub ts_on: bool,
    pub ts_recent: u32,
    pub ts_offset: u32,
    pub expires: Instant,
    /// When the entry was created (RFC 6191 reuse by `connect` waits a little).
    pub born: Instant,
    pub(super) stamp: u32,
    pub(super) active: bool,
}

/// What to do with a segment for a TIME-WAIT entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TwAction {
    /// Send an ACK from the entry.
    Ack,
    /// Drop the segment.
    Drop,
    /// The SYN may open a new connection: the entry is gone, hand the SYN to the listener.
    Reopen,
}

/// The TIME-WAIT table (see the module documentation).
#[derive(Debug)]
pub(crate) struct TimeWait {
    entries: Vec<TwEntry>,
    map: FlowMap,
    fifo: FixedRing<(u64, u32, u32)>,
    free: Vec<u32>,
    pub(super) stamp: u32,
    wait: Duration,
}

impl TimeWait {
    /// A table for `max` entries, each waiting `wait`.
    pub fn new(max: usize, wait: Duration, secret: Secret) -> TimeWait {
        let max = max.max(1);
        TimeWait {
            entries: vec![TwEntry::default(); max],
            map: FlowMap::new(max, secret),
            fifo: FixedRing::new(2 * max),
            free: (0..max as u32).rev().collect(),
            stamp: 0,
            wait,
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The entry for `key`.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<usize> {
        self.map.get(key).map(|i| i as usize)
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> Option<&TwEntry> {
        self.entries.get(i).filter(|e| e.active)
    }

    /// Adds an entry expiring `wait` from `now`. Returns `true` if an older entry had to be
    /// dropped to make room.
    pub fn insert(&mut self, now: Instant, mut e: TwEntry) -> bool {
        if let Some(old) = self.lookup(&e.key) {
            self.remove(old);
        }
        let mut evicted = false;
        if self.free.is_empty() || self.fifo.len() == self.fifo.capacity() {
            evicted = self.evict_oldest();
        }
        let Some(i) = self.free.pop() else { return evicted };
        self.stamp = self.stamp.wrapping_add(1);
        e.stamp = self.stamp;
        e.active = true;
        e.expires = now + self.wait;
        e.born = now;
        if !self.map.insert(e.key, i) {
            self.free.push(i);
            return evicted;
        }
        self.entries[i as usize] = e;
        self.fifo.push((e.expires.as_nanos(), i, e.stamp));
        evicted
    }

    fn evict_oldest(&mut self) -> bool {
        while let Some((_, i, stamp)) = self.fifo.pop() {
            let live = self.entries.get(i as usize).is_some_and(|e| e.active && e.stamp == stamp);
            if live {
                self.remove(i as usize);
                return true;
            }
        }
        false
    }

    /// Removes entry `i`.
    pub fn remove(&mut self, i: usize) {
        let Some(e) = self.entries.get_mut(i) else { return };
        if !e.active {
            return;
        }
        e.active = false;
        let key = e.key;
        self.map.remove(&key);
        self.free.push(i as u32);
    }

    /// The earliest instant an entry may expire.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.fifo.front().map(|&(at, _, _)| Instant::from_nanos(at))
    }

    /// Removes the entries whose wait is over; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(&(at, i, stamp)) = self.fifo.front() {
            if at > now.as_nanos() {
                break;
            }
            self.fifo.pop();
            let Some(e) = self.entries.get(i as usize).copied() else { continue };
            if !e.active || e.stamp != stamp {
                continue;
            }
            if e.expires > now {
                // Restarted by a retransmitted FIN: wait for its new turn.
                self.fifo.push((e.expires.as_nanos(), i, stamp));
                continue;
            }
            self.remove(i as usize);
            n += 1;
        }
        n
    }

    /// What a segment for entry `i` means (see the module documentation).
    pub fn on_segment(
        &mut self,
        i: usize,
        now: Instant,
        flags: TcpFlags,
        seqno: u32,
        payload_len: usize,
        tsval: Option<u32>,
    ) -> TwAction {
        let wait = self.wait;
        let Some(e) = self.entries.get_mut(i).filter(|e| e.active) else {
            return TwAction::Drop;
        };
        if flags.contains(TcpFlags::RST) {
            return TwAction::Drop;
        }
        if flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK) {
            let newer = match (e.ts_on, tsval) {
                (true, Some(v)) => seq::gt(v, e.ts_recent),
                _ => seq::gt(seqno, e.rcv_nxt),
            };
            if newer {
                self.remove(i);
                return TwAction::Reopen;
            }
            return TwAction::Ack;
        }
        if let (true, Some(v)) = (e.ts_on, tsval) {
            if seq::lt(v, e.ts_recent) {
                // PAWS: an old duplicate.
                return if payload_len > 0 { TwAction::Ack } else { TwAction::Drop };
            }
        }
        let end = seqno.wrapping_add(payload_len as u32);
        if flags.contains(TcpFlags::FIN) && end.wrapping_add(1) == e.rcv_nxt {
            // The peer's FIN again: our last ACK was lost. ACK and restart the wait.
            e.expires = now + wait;
            if let Some(v) = tsval.filter(|_| e.ts_on) {
                e.ts_recent = v;
            }
            return TwAction::Ack;
        }
        if payload_len > 0 || flags.contains(TcpFlags::FIN) {
            return TwAction::Ack;
        }
        TwAction::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u16) -> FlowKey {
        FlowKey { lip: 1, rip: 2, lport: 80, rport: n }
    }

    fn entry(n: u16) -> TwEntry {
        TwEntry {
            key: key(n),
            snd_nxt: 100,
            rcv_nxt: 500,
            ts_on: true,
            ts_recent: 1000,
            ..TwEntry::default()
        }
    }

    #[test]
    fn expires_restarts_and_evicts() {
        let wait = Duration::from_secs(60);
        let mut tw = TimeWait::new(2, wait, Secret::new(1, 1));
        let t0 = Instant::from_secs(1);
        assert!(!tw.insert(t0, entry(1)));
        assert!(!tw.insert(t0 + Duration::from_secs(10), entry(2)));
        assert_eq!(tw.len(), 2);
        // A retransmitted FIN for entry 1 at t0+30 restarts its wait.
        let i = tw.lookup(&key(1)).unwrap();
        let a = tw.on_segment(
            i,
            t0 + Duration::from_secs(30),
            TcpFlags::FIN | TcpFlags::ACK,
            499,
            0,
            Some(1001),
        );
        assert_eq!(a, TwAction::Ack);
        assert_eq!(tw.expire(t0 + Duration::from_secs(61)), 0);
        assert_eq!(tw.expire(t0 + Duration::from_secs(71)), 1); // entry 2
        assert!(tw.lookup(&key(1)).is_some());
        assert_eq!(tw.expire(t0 + Duration::from_secs(91)), 1);
        assert_eq!(tw.len(), 0);
        // Full: the oldest goes.
        tw.insert(t0, entry(1));
        tw.insert(t0, entry(2));
        assert!(tw.insert(t0, entry(3)));
        assert!(tw.lookup(&key(1)).is_none() && tw.lookup(&key(3)).is_some());
        assert!(tw.next_timeout().is_some());
    }

    #[test]
    fn segments_in_time_wait() {
        let mut tw = TimeWait::new(4, Duration::from_secs(60), Secret::new(1, 1));
        let t = Instant::from_secs(1);
        tw.insert(t, entry(1));
        let i = tw.lookup(&key(1)).unwrap();
        assert_eq!(tw.on_segment(i, t, TcpFlags::RST, 500, 0, None), TwAction::Drop);
        assert_eq!(tw.on_segment(i, t, TcpFlags::ACK, 500, 0, Some(1001)), TwAction::Drop);
        assert_eq!(tw.on_segment(i, t, TcpFlags::ACK, 500, 10, Some(1001)), TwAction::Ack);
        // An old SYN: ACK; a SYN with a newer timestamp reopens.
        assert_eq!(tw.on_segment(i, t, TcpFlags::SYN, 9999, 0, Some(999)), TwAction::Ack);
        assert_eq!(tw.on_segment(i, t, TcpFlags::SYN, 1, 0, Some(2000)), TwAction::Reopen);
        assert!(tw.get(i).is_none());
        // Without timestamps: the SYN's sequence number decides (RFC 9293 / RFC 6191).
        let mut e = entry(2);
        e.ts_on = false;
        tw.insert(t, e);
        let i = tw.lookup(&key(2)).unwrap();
        assert_eq!(tw.on_segment(i, t, TcpFlags::SYN, 400, 0, None), TwAction::Ack);
        assert_eq!(tw.on_segment(i, t, TcpFlags::SYN, 600, 0, None), TwAction::Reopen);
    }
}
