//! # Listening sockets, the accept queue and SYN cookies
//!
//! What it is: [`Listeners`], the passive-open endpoints of one stack: lookup of the listener
//! for a destination in O(1) (an array indexed by port, with a short chain for listeners
//! sharing a port on different addresses; a specific address wins over `0.0.0.0`), each
//! listener's count of half-open (SYN-RECEIVED) connections and its bounded accept queue; and
//! the stateless SYN cookies of RFC 4987 §3.6 ([`cookie_isn`], [`cookie_check`]) used when the
//! SYN queue is full.
//!
//! What it owns: the listener slots (allocated once) and each accept queue (sized at `listen`,
//! the only allocation, like a UDP bind). Half-open connections themselves live in the
//! connection table; a listener only counts them.
//!
//! SYN cookies, Linux's encoding (`net/ipv4/syncookies.c`): the ISN of the SYN-ACK is
//! `H(4-tuple, 0) + SEG.SEQ + (t << 24) + ((H(4-tuple, t) + mss_index) mod 2^24)`, where `t`
//! counts 64-second periods and `H` is SipHash keyed with the stack's secret; a cookie is valid
//! for two periods. With timestamps, the low six bits of our TSval carry the peer's window
//! scale (4 bits, 15 = none) and SACK-permitted, so those options survive too; without
//! timestamps the cookie SYN-ACK offers only the MSS, as Linux does.
//!
//! What it never does: allocate per segment, scan the connection table on the fast path, or
//! panic.
//!
//! Invariants: `ports[p]` heads the chain of listeners on port `p`; an accept queue never
//! holds more than its backlog.
//!
//! References: RFC 9293 §3.10.7.2 (LISTEN), RFC 4987 (SYN flooding mitigations), RFC 6528,
//! Linux `tcp_conn_request`, `cookie_v4_check`.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::config::ListenHandle;
use super::hash::{tuple_words, Secret};
use super::table::FlowKey;
use crate::ring::FixedRing;
use crate::time::Instant;

const NIL: u16 = u16::MAX;

/// Linux's cookie MSS table (`msstab`): the index travels in the cookie.
pub(crate) const COOKIE_MSS: [u16; 4] = [536, 1300, 1440, 1460];

/// Low bits of a cookie TSval that carry options.
pub(crate) const TS_OPT_MASK: u32 = 0x3f;

/// One listening socket.
#[derive(Debug)]
pub(crate) struct Listener {
    pub generation: u16,
    pub active: bool,
    pub local: SocketAddrV4,
    pub backlog: usize,
    pub accept: FixedRing<u32>,
    pub syn_count: usize,
    next: u16,
    /// An `Acceptable` event is due.
    pub ev: bool,
    pub in_ready: bool,
}

/// The listeners of one stack (see the module documentation).
#[derive(Debug)]
pub(crate) struct Listeners {
    slots: Vec<Listener>,
    ports: Box<[u16]>,
}

impl Listeners {
    /// Room for `max` listeners.
    pub fn new(max: usize) -> Listeners {
        let slots = (0..max.min(usize::from(NIL) - 1))
            .map(|_| Listener {
                generation: 0,
                active: false,
                local: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                backlog: 0,
                accept: FixedRing::new(0),
                syn_count: 0,
                next: NIL,
                ev: false,
                in_ready: false,
            })
            .collect();
        Listeners { slots, ports: vec![NIL; 65536].into() }
    }

    /// Listener slots.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Whether some listener uses `port`.
    pub fn port_used(&self, port: u16) -> bool {
        self.ports[usize::from(port)] != NIL
    }

    /// Opens a listener on `local`; `None` if the address and port are taken or no slot is free.
    pub fn open(
        &mut self,
        local: SocketAddrV4,
        backlog: usize,
    ) -> Option<Result<ListenHandle, ()>> {
        let mut i = self.ports[usize::from(local.port())];
        while i != NIL {
            let l = &self.slots[usize::from(i)];
            if *l.local.ip() == *local.ip()
                || l.local.ip().is_unspecified()
                || local.ip().is_unspecified()
            {
                return Some(Err(()));
            }
            i = l.next;
        }
        let idx = self.slots.iter().position(|l| !l.active)?;
        let head = self.ports[usize::from(local.port())];
        let l = &mut self.slots[idx];
        l.active = true;
        l.local = local;
        l.backlog = backlog.max(1);
        l.accept = FixedRing::new(backlog.max(1));
        l.syn_count = 0;
        l.ev = false;
        l.next = head;
        self.ports[usize::from(local.port())] = idx as u16;
        Some(Ok(ListenHandle { index: idx as u16, generation: l.generation }))
    }

    /// The slot of a valid handle.
    pub fn index(&self, h: ListenHandle) -> Option<usize> {
        let l = self.slots.get(usize::from(h.index))?;
        (l.active && l.generation == h.generation).then_some(usize::from(h.index))
    }

    /// The handle of slot `i`.
    pub fn handle(&self, i: usize) -> ListenHandle {
        ListenHandle { index: i as u16, generation: self.slots.get(i).map_or(0, |l| l.generation) }
    }

    /// Listener `i`.
    pub fn get(&self, i: usize) -> Option<&Listener> {
        self.slots.get(i).filter(|l| l.active)
    }

    /// Listener `i`, mutable.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Listener> {
        self.slots.get_mut(i).filter(|l| l.active)
    }

    /// Closes slot `i`; returns the connections still in its accept queue.
    pub fn close(&mut self, i: usize, mut each: impl FnMut(u32)) {
        let Some(l) = self.slots.get_mut(i) else { return };
        if !l.active {
            return;
        }
        while let Some(c) = l.accept.pop() {
            each(c);
        }
        l.active = false;
        l.generation = l.generation.wrapping_add(1);
        l.accept = FixedRing::new(0);
        let port = usize::from(l.local.port());
        let next = l.next;
        // Unlink from the port chain.
        if self.ports[port] == i as u16 {
            self.ports[port] = next;
        } else {
            let mut j = self.ports[port];
            while j != NIL {
                let nj = self.slots[usize::from(j)].next;
                if nj == i as u16 {
                    self.slots[usize::from(j)].next = next;
                    break;
                }
                j = nj;
            }
        }
    }

    /// The listener for a segment to `dst:port`: one bound to `dst` exactly, else one bound to
    /// `0.0.0.0`.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr, port: u16) -> Option<usize> {
        let mut i = self.ports[usize::from(port)];
        let mut wildcard = None;
        while i != NIL {
            let l = &self.slots[usize::from(i)];
            if *l.local.ip() == dst {
                return Some(usize::from(i));
            }
            if l.local.ip().is_unspecified() {
                wildcard = Some(usize::from(i));
            }
            i = l.next;
        }
        wildcard
    }
}

/// The 64-second period counter of SYN cookies.
pub(crate) fn cookie_time(now: Instant) -> u32 {
    (now.as_nanos() / 64_000_000_000) as u32
}

fn cookie_hash(secret: &Secret, key: &FlowKey, t: u32, which: u64) -> u32 {
    let [a, b] = tuple_words(key.lip, key.lport, key.rip, key.rport);
    secret.siphash(&[a, b, (u64::from(t) << 8) | which]) as u32
}

/// The index in [`COOKIE_MSS`] of the largest entry not above the peer's MSS.
pub(crate) fn cookie_mss_index(peer_mss: u16) -> u32 {
    COOKIE_MSS.iter().rposition(|&m| m <= peer_mss).unwrap_or(0) as u32
}

/// The ISN of a cookie SYN-ACK for a SYN with sequence number `syn_seq` on `key` (local,
/// remote) at `now`, encoding `mss_index`.
pub(crate) fn cookie_isn(
    secret: &Secret,
    key: &FlowKey,
    syn_seq: u32,
    now: Instant,
    mss_index: u32,
) -> u32 {
    let t = cookie_time(now);
    cookie_hash(secret, key, 0, 0)
        .wrapping_add(syn_seq)
        .wrapping_add(t << 24)
        .wrapping_add(cookie_hash(secret, key, t, 1).wrapping_add(mss_index) & 0x00ff_ffff)
}

/// Validates the cookie acknowledged by an ACK (`SEG.ACK − 1`, with `SEG.SEQ − 1` the peer's
/// ISN); returns the MSS index it carries.
pub(crate) fn cookie_check(
    secret: &Secret,
    key: &FlowKey,
    ack: u32,
    seqno: u32,
    now: Instant,
) -> Option<u32> {
    let cookie = ack.wrapping_sub(1);
    let syn_seq = seqno.wrapping_sub(1);
    let c = cookie.wrapping_sub(cookie_hash(secret, key, 0, 0)).wrapping_sub(syn_seq);
    let t_now = cookie_time(now);
    let t = c >> 24;
    let age = t_now.wrapping_sub(t) & 0xff;
    if age >= 2 {
        return None;
    }
    let t_full = t_now.wrapping_sub(age);
    let idx = c.wrapping_sub(cookie_hash(secret, key, t_full, 1)) & 0x00ff_ffff;
    (idx < COOKIE_MSS.len() as u32).then_some(idx)
}

/// The TSval of a cookie SYN-ACK: our clock with the peer's options in the low bits, never
/// ahead of the clock (Linux's `cookie_init_timestamp`).
pub(crate) fn cookie_tsval(ts_now: u32, peer_ws: Option<u8>, sack: bool) -> u32 {
    let opts = u32::from(peer_ws.map_or(0xf, |w| w.min(14))) | (u32::from(sack) << 4);
    let mut ts = (ts_now & !TS_OPT_MASK) | opts;
    if ts.wrapping_sub(ts_now) as i32 > 0 {
        ts = ts.wrapping_sub(TS_OPT_MASK + 1);
    }
    ts
}

/// The peer's window scale and SACK-permitted from the echoed cookie TSval.
pub(crate) fn cookie_ts_decode(tsecr: u32) -> (Option<u8>, bool) {
    let ws = (tsecr & 0xf) as u8;
    (if ws == 0xf { None } else { Some(ws) }, tsecr & 0x10 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FlowKey {
        FlowKey { lip: 0x0a00_0002, rip: 0x0a00_0009, lport: 80, rport: 40000 }
    }

    #[test]
    fn cookies_validate_for_two_periods_only() {
        let s = Secret::new(11, 22);
        let t0 = Instant::from_secs(1000);
        for idx in 0..4 {
            let isn = cookie_isn(&s, &key(), 12345, t0, idx);
            let ok = |now| cookie_check(&s, &key(), isn.wrapping_add(1), 12346, now);
            assert_eq!(ok(t0), Some(idx));
            assert_eq!(ok(t0 + core::time::Duration::from_secs(64)), Some(idx));
            assert_eq!(ok(t0 + core::time::Duration::from_secs(200)), None);
            // Another peer sequence number or 4-tuple fails.
            assert_eq!(cookie_check(&s, &key(), isn.wrapping_add(1), 999, t0), None);
            let mut other = key();
            other.rport += 1;
            assert_eq!(cookie_check(&s, &other, isn.wrapping_add(1), 12346, t0), None);
        }
        assert_eq!(cookie_mss_index(1460), 3);
        assert_eq!(cookie_mss_index(1400), 1);
        assert_eq!(cookie_mss_index(100), 0);
    }

    #[test]
    fn timestamp_carries_options() {
        let ts = cookie_tsval(1_000_000, Some(7), true);
        assert!(ts <= 1_000_000 && 1_000_000 - ts < 64);
        assert_eq!(cookie_ts_decode(ts), (Some(7), true));
        assert_eq!(cookie_ts_decode(cookie_tsval(5, None, false)), (None, false));
    }

    #[test]
    fn listener_lookup_prefers_exact_address() {
        let mut ls = Listeners::new(4);
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80);
        let h = ls.open(any, 8).unwrap().unwrap();
        assert!(ls.open(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80), 8).unwrap().is_err());
        assert_eq!(ls.lookup(Ipv4Addr::new(10, 0, 0, 2), 80), Some(usize::from(h.index)));
        assert_eq!(ls.lookup(Ipv4Addr::new(10, 0, 0, 2), 81), None);
        let i = ls.index(h).unwrap();
        ls.close(i, |_| {});
        assert_eq!(ls.index(h), None);
        assert!(!ls.port_used(80));
        let a = ls.open(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80), 8).unwrap().unwrap();
        let b = ls.open(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 3), 80), 8).unwrap().unwrap();
        assert_eq!(ls.lookup(Ipv4Addr::new(10, 0, 0, 3), 80), Some(usize::from(b.index)));
        ls.close(usize::from(b.index), |_| {});
        assert_eq!(ls.lookup(Ipv4Addr::new(10, 0, 0, 2), 80), Some(usize::from(a.index)));
        assert_eq!(ls.capacity(), 4);
    }
}
