//! # ICMP: when to answer, and how fast
//!
//! What it is: the policy half of ICMPv4 (the wire half is [`crate::wire::Icmpv4Packet`]):
//! the [`TokenBucket`] that rate-limits error messages, the RFC 1122 §3.2.2 rules for when an
//! error may be sent at all ([`may_send_error`]), and [`ErrorQueue`], the bounded queue of
//! errors waiting for a transmit slot.
//!
//! What it owns: the decision to send destination unreachable (port, protocol) and time
//! exceeded (reassembly), and how much of the offending datagram to quote: its IPv4 header and
//! as much of its payload as keeps the error within 576 bytes (RFC 1812 §4.3.2.3; Linux does
//! the same).
//!
//! Echo replies are not here: the stack answers a ping by rewriting the request in place
//! (zero copy), and does not rate-limit them (Linux's default `icmp_ratemask` limits only
//! errors).
//!
//! What it never does: answer an ICMP error, a broadcast or multicast datagram (link or IP), a
//! non-initial fragment, or a datagram whose source is not a unicast host (RFC 1122
//! §3.2.2); allocate after construction; read a clock (the bucket refills from `now`).
//!
//! Invariants: the bucket never holds more than `burst` tokens; the queue never holds more
//! than its capacity (a full queue counts the error as rate-limited).
//!
//! References: RFC 792, RFC 1122 §3.2.2 (and §3.2.2.4 on rate limiting), RFC 1812 §4.3.2.8
//! (token bucket), Linux `net/ipv4/icmp.c` (`icmp_global_allow`: `icmp_msgs_per_sec` 1000,
//! `icmp_msgs_burst` 50).

use std::net::Ipv4Addr;

use crate::time::Instant;
use crate::wire::{EthernetAddress, Icmpv4DstUnreachable, Icmpv4TimeExceeded};

/// Most bytes of the offending datagram an error quotes (576 − 20 − 8).
pub const QUOTE_MAX: usize = 548;

/// Tunables of ICMP; the defaults are Linux's global limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpConfig {
    /// Error messages per second in the long run.
    pub rate_per_sec: u32,
    /// Error messages that may be sent at once after a quiet period.
    pub burst: u32,
    /// Errors waiting for a transmit slot (at least a receive batch, so that a batch of
    /// offending datagrams is limited by the bucket, not by the queue).
    pub queue: usize,
}

impl Default for IcmpConfig {
    fn default() -> IcmpConfig {
        IcmpConfig { rate_per_sec: 1000, burst: 50, queue: 64 }
    }
}

const NANOS: u64 = 1_000_000_000;

/// A token bucket refilled at `rate` tokens per second up to `burst`, in nanotoken units so
/// that no precision is lost between calls.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    rate: u64,
    cap: u64,
    credit: u64,
    stamp: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: u32, burst: u32) -> TokenBucket {
        let cap = u64::from(burst).saturating_mul(NANOS);
        TokenBucket { rate: u64::from(rate_per_sec), cap, credit: cap, stamp: Instant::ZERO }
    }

    /// Takes one token if there is one at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.as_nanos().saturating_sub(self.stamp.as_nanos());
        self.stamp = self.stamp.max(now);
        self.credit = self.credit.saturating_add(elapsed.saturating_mul(self.rate)).min(self.cap);
        if self.credit >= NANOS {
            self.credit -= NANOS;
            true
        } else {
            false
        }
    }
}

/// Facts about an offending datagram that decide whether it may be answered with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offender {
    /// Its source address.
    pub src: Ipv4Addr,
    /// Whether its IPv4 destination was a broadcast or multicast address.
    pub ip_broadcast: bool,
    /// Whether its link-layer destination was broadcast or multicast.
    pub link_broadcast: bool,
    /// Whether it was a fragment other than the first.
    pub later_fragment: bool,
    /// For an ICMP datagram, its type; `None` otherwise.
    pub icmp_type: Option<u8>,
}

/// RFC 1122 §3.2.2: an error must not answer an ICMP error, a broadcast or multicast (link
/// or IP), a non-initial fragment, or a source that is not a unicast host.
pub fn may_send_error(o: &Offender) -> bool {
    let query = |t: u8| matches!(t, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18);
    is_unicast_host(o.src)
        && !o.ip_broadcast
        && !o.link_broadcast
        && !o.later_fragment
        && o.icmp_type.is_none_or(query)
}

/// Whether `ip` can be the address of a single remote host (not unspecified, broadcast,
/// multicast, loopback or reserved class E).
pub fn is_unicast_host(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_loopback()
        || ip.octets()[0] >= 240)
}

/// An error message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Destination unreachable.
    Unreachable(Icmpv4DstUnreachable),
    /// Time exceeded.
    TimeExceeded(Icmpv4TimeExceeded),
    /// Parameter problem, with the offset of the offending octet in the original header.
    ParamProblem(u8),
}

/// One queued error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueuedError {
    pub peer: EthernetAddress,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub kind: ErrorKind,
    pub quote: [u8; QUOTE_MAX],
    pub quote_len: usize,
}

impl Default for QueuedError {
    fn default() -> QueuedError {
        QueuedError {
            peer: EthernetAddress::default(),
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            kind: ErrorKind::Unreachable(Icmpv4DstUnreachable::PortUnreachable),
            quote: [0; QUOTE_MAX],
            quote_len: 0,
        }
    }
}

/// Rate limit and queue of ICMP errors (see the module documentation).
#[derive(Debug)]
pub struct ErrorQueue {
    bucket: TokenBucket,
    queue: crate::ring::FixedRing<QueuedError>,
}

impl ErrorQueue {
    /// An empty queue with a full bucket.
    pub fn new(cfg: &IcmpConfig) -> ErrorQueue {
        ErrorQueue {
            bucket: TokenBucket::new(cfg.rate_per_sec, cfg.burst),
            queue: crate::ring::FixedRing::new(cfg.queue),
        }
    }

    /// Errors waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no error waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues an error from our `src` to `dst` (via `peer`) quoting `original` (cut to
    /// [`QUOTE_MAX`]), if the bucket and the queue allow it. `false` means rate-limited.
    pub(crate) fn push(
        &mut self,
        now: Instant,
        peer: EthernetAddress,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        kind: ErrorKind,
        original: &[u8],
    ) -> bool {
        if self.queue.len() >= self.queue.capacity() || !self.bucket.allow(now) {
            return false;
        }
        let mut e = QueuedError { peer, src, dst, kind, ..QueuedError::default() };
        let n = original.len().min(QUOTE_MAX);
        e.quote[..n].copy_from_slice(&original[..n]);
        e.quote_len = n;
        self.queue.push(e)
    }

    pub(crate) fn front(&self) -> Option<&QueuedError> {
        self.queue.front()
    }

    pub(crate) fn pop(&mut self) {
        self.queue.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let mut b = TokenBucket::new(10, 3);
        let sent = (0..10).filter(|_| b.allow(ms(0))).count();
        assert_eq!(sent, 3);
        assert!(!b.allow(ms(50)));
        assert!(b.allow(ms(100)), "one token per 100 ms");
        assert!(!b.allow(ms(150)));
        // A long quiet period refills to the burst, not beyond.
        let sent = (0..10).filter(|_| b.allow(ms(100_000))).count();
        assert_eq!(sent, 3);
        // Time going backwards does not mint tokens.
        assert!(!b.allow(ms(0)));
    }

    #[test]
    fn rfc1122_rules() {
        let ok = Offender {
            src: Ipv4Addr::new(10, 0, 0, 1),
            ip_broadcast: false,
            link_broadcast: false,
            later_fragment: false,
            icmp_type: None,
        };
        assert!(may_send_error(&ok));
        assert!(may_send_error(&Offender { icmp_type: Some(8), ..ok }));
        assert!(!may_send_error(&Offender { icmp_type: Some(3), ..ok }), "never about an error");
        assert!(!may_send_error(&Offender { ip_broadcast: true, ..ok }));
        assert!(!may_send_error(&Offender { link_broadcast: true, ..ok }));
        assert!(!may_send_error(&Offender { later_fragment: true, ..ok }));
        for src in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "127.0.0.1", "240.0.0.1"] {
            assert!(!may_send_error(&Offender { src: src.parse().unwrap(), ..ok }), "{src}");
        }
    }

    #[test]
    fn queue_is_bounded_and_rate_limited() {
        let cfg = IcmpConfig { rate_per_sec: 1, burst: 5, queue: 2 };
        let mut q = ErrorQueue::new(&cfg);
        let kind = ErrorKind::Unreachable(Icmpv4DstUnreachable::PortUnreachable);
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let pushed = (0..4)
            .filter(|_| q.push(ms(0), EthernetAddress::BROADCAST, a, b, kind, &[1; 600]))
            .count();
        assert_eq!(pushed, 2);
        assert_eq!(q.front().unwrap().quote_len, QUOTE_MAX);
        q.pop();
        assert_eq!(q.len(), 1);
    }
}
