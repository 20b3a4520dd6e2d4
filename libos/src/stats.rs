//! # Drop reasons and stack counters
//!
//! What it is: [`DropReason`], the bounded set of reasons for which the stack drops a received
//! frame or a datagram it was asked to send, and [`Stats`], the stack's single-writer counters.
//!
//! What it owns: the vocabulary of metrics labels (`reason="bad_checksum"`, …). The collector
//! in `appliance` reads a worker's [`Stats`] between batches and exports them (DESIGN §6).
//!
//! What it never does: allocate, lock, or use atomics: a stack is owned by one worker, so its
//! counters are plain integers.
//!
//! Invariants: a malformed or unwanted packet is never an error value, it is a counted drop;
//! every reason has a fixed index (`reason as usize < DropReason::COUNT`) and a stable
//! snake_case label ([`DropReason::as_str`]) for metrics.

/// Why a frame (or an originated datagram) was dropped. Bounded: metrics use these as labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than a header or a length field says.
    Truncated,
    /// A header field holds a value the format does not allow.
    Malformed,
    /// An IPv4 header, UDP or ICMP checksum did not verify.
    BadChecksum,
    /// Addressed (Ethernet or IPv4) to someone else, or to a multicast group we did not join.
    NotForUs,
    /// Carries a VLAN tag other than the interface's (or none when one is configured).
    WrongVlan,
    /// An EtherType the stack does not handle (IPv6, LLDP, …).
    UnknownEthertype,
    /// An IP protocol the stack does not handle (answered with protocol unreachable).
    UnknownProtocol,
    /// A martian source address: broadcast, multicast, unspecified, loopback or our own.
    BadSource,
    /// UDP to a port no socket is bound to (answered with port unreachable).
    NoSocket,
    /// The socket's receive queue was full.
    SocketFull,
    /// The datagram did not fit the socket's receive slot size.
    TooBig,
    /// No reassembly slot was free, or a datagram exceeded the reassembly buffer or its
    /// bookkeeping bound.
    FragmentLimit,
    /// A fragment partially overlapped one already received: the whole datagram is dropped
    /// (Linux's choice, RFC 5722's rule applied to IPv4).
    FragmentOverlap,
    /// A fragment entirely covered by what was already received (kept: the first copy wins).
    FragmentDuplicate,
    /// An incomplete datagram timed out (counted once per datagram).
    ReassemblyTimeout,
    /// An ICMP message the stack does not act on (replies to pings it did not send, errors, …).
    IcmpIgnored,
    /// An ARP packet not addressed to us, or of an unsupported hardware/protocol type.
    ArpIgnored,
    /// Transmit side: a datagram waiting for ARP resolution found the pending queue full.
    ArpPendingFull,
    /// Transmit side: ARP resolution failed; the datagrams waiting for it were dropped.
    ArpFailed,
    /// Transmit side: no route to the destination.
    NoRoute,
    /// Transmit side: a datagram needs more TX slots than a call ever offers, or more than
    /// 65535 bytes of IPv4.
    TxTooBig,
    /// A TCP segment discarded by the TCP state machine (out of window, PAWS, bad ACK, full
    /// queues, …): `TcpStats::drops` has the reason.
    Tcp,
}

impl DropReason {
    /// Number of reasons (the length of [`Stats::drops`]).
    pub const COUNT: usize = 22;

    /// Every reason, in index order.
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Truncated,
        DropReason::Malformed,
        DropReason::BadChecksum,
        DropReason::NotForUs,
        DropReason::WrongVlan,
        DropReason::UnknownEthertype,
        DropReason::UnknownProtocol,
        DropReason::BadSource,
        DropReason::NoSocket,
        DropReason::SocketFull,
        DropReason::TooBig,
        DropReason::FragmentLimit,
        DropReason::FragmentOverlap,
        DropReason::FragmentDuplicate,
        DropReason::ReassemblyTimeout,
        DropReason::IcmpIgnored,
        DropReason::ArpIgnored,
        DropReason::ArpPendingFull,
        DropReason::ArpFailed,
        DropReason::NoRoute,
        DropReason::TxTooBig,
        DropReason::Tcp,
    ];

    /// The metrics label, snake_case and stable.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Malformed => "malformed",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::NotForUs => "not_for_us",
            DropReason::WrongVlan => "wrong_vlan",
            DropReason::UnknownEthertype => "unknown_ethertype",
            DropReason::UnknownProtocol => "unknown_protocol",
            DropReason::BadSource => "bad_source",
            DropReason::NoSocket => "no_socket",
            DropReason::SocketFull => "socket_full",
            DropReason::TooBig => "too_big",
            DropReason::FragmentLimit => "fragment_limit",
            DropReason::FragmentOverlap => "fragment_overlap",
            DropReason::FragmentDuplicate => "fragment_duplicate",
            DropReason::ReassemblyTimeout => "reassembly_timeout",
            DropReason::IcmpIgnored => "icmp_ignored",
            DropReason::ArpIgnored => "arp_ignored",
            DropReason::ArpPendingFull => "arp_pending_full",
            DropReason::ArpFailed => "arp_failed",
            DropReason::NoRoute => "no_route",
            DropReason::TxTooBig => "tx_too_big",
            DropReason::Tcp => "tcp",
        }
    }
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of one stack. Single writer (the worker that owns the stack).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Drops by reason, indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
    /// Frames handed to `handle_rx`.
    pub rx_frames: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames answered in place (verdict `Transmit`).
    pub tx_in_place: u64,
    /// Frames written by `poll_tx`.
    pub tx_frames: u64,
    /// Bytes written by `poll_tx`.
    pub tx_bytes: u64,
    /// ARP requests sent (resolution, probes, gratuitous announcements).
    pub arp_requests_sent: u64,
    /// ARP replies sent (in place).
    pub arp_replies_sent: u64,
    /// ARP packets from another host claiming one of our addresses (RFC 5227 conflicts).
    pub arp_conflicts: u64,
    /// ICMP echo replies sent (in place, or fragmented from a reassembled request).
    pub icmp_echo_replies: u64,
    /// ICMP error messages sent (unreachable, time exceeded).
    pub icmp_errors_sent: u64,
    /// ICMP error messages suppressed by the rate limit or a full error queue.
    pub icmp_rate_limited: u64,
    /// UDP datagrams delivered to sockets (queued, handed over, echoed or sunk).
    pub udp_rx_datagrams: u64,
    /// UDP datagrams sent by `poll_tx` (socket sends, echoes of reassembled datagrams,
    /// generators).
    pub udp_tx_datagrams: u64,
    /// Datagrams reassembled from fragments.
    pub reassembled: u64,
    /// Fragments sent.
    pub fragments_sent: u64,
}

impl Stats {
    /// Drops counted under `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Counts one drop.
    #[inline]
    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_at_its_index() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut labels: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), DropReason::COUNT);
    }

    #[test]
    fn counts_by_reason() {
        let mut s = Stats::default();
        s.drop(DropReason::NoSocket);
        s.drop(DropReason::NoSocket);
        s.drop(DropReason::TxTooBig);
        assert_eq!(s.drops(DropReason::NoSocket), 2);
        assert_eq!(s.total_drops(), 3);
        assert_eq!(DropReason::BadChecksum.to_string(), "bad_checksum");
    }
}
