//! # TCP configuration and the types of the socket API
//!
//! What it is: [`TcpConfig`] (tunables with Linux-like defaults), the handles
//! ([`TcpHandle`], [`ListenHandle`]), readiness events ([`TcpEvent`], [`Ready`]), errors
//! ([`TcpError`]), per-connection information ([`TcpInfo`], [`ConnStats`]) and the stack-wide
//! counters ([`TcpStats`], drops by [`TcpDrop`] reason).
//!
//! What it never does: hold state or allocate; these are plain values.
//!
//! Invariants: every drop reason and state has a fixed index and a stable snake_case label for
//! metrics (`xdpos_tcp_drops_total{reason="paws"}`).
//!
//! References: RFC 9293 §3.9 (user interface), RFC 1122 §4.2.3.6 (keep-alive), RFC 4987
//! (SYN cookies), Linux `ip-sysctl.rst` for the defaults.

use core::fmt;
use core::time::Duration;

use super::cc::CcAlgorithm;
use super::state::TcpState;

/// When SYN cookies answer a SYN (RFC 4987 §3.6, Linux's `tcp_syncookies`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SynCookies {
    /// Never: a SYN that finds the SYN queue full is dropped.
    Off,
    /// When a listener's SYN queue is full or no connection slot is free (Linux's `1`).
    #[default]
    Auto,
    /// For every SYN (Linux's `2`; for tests).
    Always,
}

/// Keep-alive settings of a connection (RFC 1122 §4.2.3.6; Linux's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe (`tcp_keepalive_time`, 2 h).
    pub idle: Duration,
    /// Time between unanswered probes (`tcp_keepalive_intvl`, 75 s).
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped (`tcp_keepalive_probes`, 9).
    pub probes: u8,
}

impl Default for Keepalive {
    fn default() -> Keepalive {
        Keepalive { idle: Duration::from_secs(7200), interval: Duration::from_secs(75), probes: 9 }
    }
}

/// TCP tunables of one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpConfig {
    /// Connection slots (SYN-RECEIVED connections included; TIME-WAIT entries are separate).
    /// Each reserves `rx_buffer + tx_buffer` bytes of address space at `Stack::new` (touched
    /// only when used): for tens of thousands of connections, shrink the buffers (10,000 ×
    /// 2 × 16 KiB = 320 MiB).
    pub max_connections: usize,
    /// Listening sockets.
    pub max_listeners: usize,
    /// TIME-WAIT entries kept (Linux's `tcp_max_tw_buckets`); when full the oldest is dropped.
    pub max_time_wait: usize,
    /// Receive buffer bytes per connection (the most window ever advertised).
    pub rx_buffer: usize,
    /// Send buffer bytes per connection (what `write` can queue).
    pub tx_buffer: usize,
    /// Half-open connections per listener before SYN cookies (or drops) take over.
    pub syn_backlog: usize,
    /// SYN cookie policy.
    pub syn_cookies: SynCookies,
    /// Congestion control of new connections.
    pub congestion: CcAlgorithm,
    /// Initial congestion window in segments (RFC 6928: 10).
    pub initial_cwnd: u32,
    /// Offer and accept RFC 7323 timestamps.
    pub timestamps: bool,
    /// Offer and accept RFC 7323 window scaling.
    pub window_scaling: bool,
    /// Offer and accept SACK (RFC 2018).
    pub sack: bool,
    /// Initial retransmission timeout (RFC 6298: 1 s).
    pub initial_rto: Duration,
    /// Smallest retransmission timeout (Linux: 200 ms).
    pub min_rto: Duration,
    /// Largest retransmission timeout (Linux: 120 s).
    pub max_rto: Duration,
    /// Delayed-ACK timeout (Linux's minimum: 40 ms; RFC 9293 caps it at 500 ms).
    pub delayed_ack: Duration,
    /// Connection-establishing SYN retransmissions (`tcp_syn_retries`).
    pub syn_retries: u8,
    /// SYN-ACK retransmissions (`tcp_synack_retries`).
    pub synack_retries: u8,
    /// Data retransmissions before the connection is dropped (`tcp_retries2`).
    pub max_retries: u8,
    /// TIME-WAIT duration, 2 MSL (Linux: 60 s).
    pub time_wait: Duration,
    /// How long an orphaned connection waits in FIN-WAIT-2 (`tcp_fin_timeout`, 60 s).
    pub fin_timeout: Duration,
    /// Keep-alive of new connections (`None`: off, as on Linux until `SO_KEEPALIVE`).
    pub keepalive: Option<Keepalive>,
    /// Disable Nagle's algorithm on new connections (`TCP_NODELAY`).
    pub nodelay: bool,
    /// The device (or the NIC layer's software TSO) splits `Gso::TcpV4` super-segments: the
    /// sender builds up to 64 KiB per frame when the transmit slot has room.
    pub tso: bool,
    /// Largest super-segment payload when `tso` is on.
    pub tso_max: usize,
    /// Challenge ACKs per second for the whole stack (RFC 5961 §7).
    pub challenge_ack_limit: u32,
    /// Ephemeral ports for `connect` (RFC 6335: 49152–65535).
    pub ephemeral_ports: (u16, u16),
    /// Reuse a TIME-WAIT 4-tuple for `connect` when timestamps make it safe (Linux's
    /// `tcp_tw_reuse`, RFC 6191's conditions).
    pub time_wait_reuse: bool,
    /// Secret for ISNs, SYN cookies, timestamp offsets, port offsets and hashing (RFC 6528:
    /// from a good random source; libos has none, DESIGN §4).
    pub secret: [u64; 2],
}

impl Default for TcpConfig {
    fn default() -> TcpConfig {
        TcpConfig {
            max_connections: 1024,
            max_listeners: 16,
            max_time_wait: 1024,
            rx_buffer: 256 * 1024,
            tx_buffer: 256 * 1024,
            syn_backlog: 256,
            syn_cookies: SynCookies::Auto,
            congestion: CcAlgorithm::Cubic,
            initial_cwnd: 10,
            timestamps: true,
            window_scaling: true,
            sack: true,
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(120),
            delayed_ack: Duration::from_millis(40),
            syn_retries: 6,
            synack_retries: 5,
            max_retries: 15,
            time_wait: Duration::from_secs(60),
            fin_timeout: Duration::from_secs(60),
            keepalive: None,
            nodelay: false,
            tso: false,
            tso_max: 65536 - 1024,
            challenge_ack_limit: 1000,
            ephemeral_ports: (49152, 65535),
            time_wait_reuse: true,
            secret: [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210],
        }
    }
}

/// Identifies a connection of one stack. Stale handles (of a closed connection) are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct TcpHandle {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl TcpHandle {
    /// The connection slot (stable while the handle is valid; for tables in the caller).
    pub fn index(&self) -> usize {
        self.index as usize
    }
}

/// Identifies a listening socket of one stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct ListenHandle {
    pub(crate) index: u16,
    pub(crate) generation: u16,
}

/// Readiness bits of a connection event (edge-triggered: each bit is reported once per change).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Ready(u16);

impl Ready {
    /// An active open completed (the connection is ESTABLISHED).
    pub const CONNECTED: Ready = Ready(1);
    /// New in-order data can be read.
    pub const READABLE: Ready = Ready(2);
    /// Send-buffer space freed after a write was refused or cut short (and at connect).
    pub const WRITABLE: Ready = Ready(4);
    /// The peer sent FIN: once the data is read, `read` returns 0.
    pub const PEER_CLOSED: Ready = Ready(8);
    /// The connection ended normally (both FINs acknowledged, or TIME-WAIT entered).
    pub const CLOSED: Ready = Ready(16);
    /// The connection was reset by the peer or refused.
    pub const RESET: Ready = Ready(32);
    /// The connection was dropped after retransmission or keep-alive timeouts.
    pub const TIMED_OUT: Ready = Ready(64);

    const NAMES: [(Ready, &'static str); 7] = [
        (Ready::CONNECTED, "CONNECTED"),
        (Ready::READABLE, "READABLE"),
        (Ready::WRITABLE, "WRITABLE"),
        (Ready::PEER_CLOSED, "PEER_CLOSED"),
        (Ready::CLOSED, "CLOSED"),
        (Ready::RESET, "RESET"),
        (Ready::TIMED_OUT, "TIMED_OUT"),
    ];

    /// No bit.
    pub const fn empty() -> Ready {
        Ready(0)
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Ready) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: Ready) -> bool {
        self.0 & other.0 != 0
    }

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }
}

impl core::ops::BitOr for Ready {
    type Output = Ready;
    fn bitor(self, rhs: Ready) -> Ready {
        Ready(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for Ready {
    fn bitor_assign(&mut self, rhs: Ready) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ready(")?;
        let mut sep = "";
        for (r, name) in Ready::NAMES {
            if self.contains(r) {
                write!(f, "{sep}{name}")?;
                sep = "|";
            }
        }
        f.write_str(")")
    }
}

/// What [`super::Tcp::poll_event`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpEvent {
    /// A listener has established connections waiting for `tcp_accept`.
    Acceptable(ListenHandle),
    /// Something changed on a connection.
    Conn {
        /// The connection.
        socket: TcpHandle,
        /// What changed.
        ready: Ready,
    },
}

/// Why a TCP call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpError {
    /// The handle does not name an open socket.
    InvalidHandle,
    /// Another socket uses this address and port (or 4-tuple).
    AddrInUse,
    /// The local address is not one of the interface's.
    AddrNotAvailable,
    /// No connection slot, listener slot or ephemeral port is free.
    NoSpace,
    /// No route to the destination.
    NoRoute,
    /// The destination is unspecified, ours, broadcast or multicast, or has port 0.
    BadDestination,
    /// Nothing to do now: no data to read, no buffer space, no connection to accept.
    WouldBlock,
    /// The call does not fit the state (writing after `shutdown`, reading a listener, …).
    InvalidState,
    /// The peer reset the connection (or refused it).
    Reset,
    /// The connection timed out.
    TimedOut,
}

impl fmt::Display for TcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TcpError::InvalidHandle => "tcp: invalid or closed socket handle",
            TcpError::AddrInUse => "tcp: address and port already in use",
            TcpError::AddrNotAvailable => "tcp: local address is not configured on the interface",
            TcpError::NoSpace => "tcp: no free connection, listener or ephemeral port",
            TcpError::NoRoute => "tcp: no route to destination",
            TcpError::BadDestination => "tcp: destination cannot be connected to",
            TcpError::WouldBlock => "tcp: operation would block",
            TcpError::InvalidState => "tcp: operation not allowed in this state",
            TcpError::Reset => "tcp: connection reset by peer",
            TcpError::TimedOut => "tcp: connection timed out",
        })
    }
}

impl std::error::Error for TcpError {}

/// Why TCP discarded a segment (or part of one). Bounded: metrics use these as labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpDrop {
    /// No connection and no listener: answered with RST (RFC 9293 §3.10.7.1).
    NoSocket,
    /// Outside the receive window (answered with an ACK).
    OutOfWindow,
    /// Rejected by PAWS (RFC 7323 §5): an old timestamp.
    Paws,
    /// An RST outside the window, or one answered by a challenge ACK (RFC 5961 §3).
    BadRst,
    /// A SYN on a synchronized connection (challenge ACK, RFC 5961 §4).
    BadSyn,
    /// An ACK of data never sent, or too old (RFC 5961 §5).
    BadAck,
    /// A segment without ACK where one is required, or with flags the state ignores.
    Ignored,
    /// Payload beyond the receive buffer.
    RcvBufFull,
    /// An out-of-order segment with no room in the reassembly ranges.
    OooFull,
    /// A SYN or cookie ACK refused because the accept queue was full.
    ListenOverflow,
    /// A SYN refused because the SYN queue was full and cookies are off, or no slot was free.
    SynQueueFull,
    /// An ACK to a listener whose SYN cookie did not validate.
    BadCookie,
    /// Data for a connection whose application closed it (answered with RST).
    DataAfterClose,
    /// The stateless reply queue (RSTs, cookie SYN-ACKs) was full.
    CtlQueueFull,
    /// A challenge ACK suppressed by the rate limit.
    RateLimited,
}

impl TcpDrop {
    /// Number of reasons.
    pub const COUNT: usize = 15;

    /// Every reason, in index order.
    pub const ALL: [TcpDrop; TcpDrop::COUNT] = [
        TcpDrop::NoSocket,
        TcpDrop::OutOfWindow,
        TcpDrop::Paws,
        TcpDrop::BadRst,
        TcpDrop::BadSyn,
        TcpDrop::BadAck,
        TcpDrop::Ignored,
        TcpDrop::RcvBufFull,
        TcpDrop::OooFull,
        TcpDrop::ListenOverflow,
        TcpDrop::SynQueueFull,
        TcpDrop::BadCookie,
        TcpDrop::DataAfterClose,
        TcpDrop::CtlQueueFull,
        TcpDrop::RateLimited,
    ];

    /// The metrics label, snake_case and stable.
    pub const fn as_str(self) -> &'static str {
        match self {
            TcpDrop::NoSocket => "no_socket",
            TcpDrop::OutOfWindow => "out_of_window",
            TcpDrop::Paws => "paws",
            TcpDrop::BadRst => "bad_rst",
            TcpDrop::BadSyn => "bad_syn",
            TcpDrop::BadAck => "bad_ack",
            TcpDrop::Ignored => "ignored",
            TcpDrop::RcvBufFull => "rcv_buf_full",
            TcpDrop::OooFull => "ooo_full",
            TcpDrop::ListenOverflow => "listen_overflow",
            TcpDrop::SynQueueFull => "syn_queue_full",
            TcpDrop::BadCookie => "bad_cookie",
            TcpDrop::DataAfterClose => "data_after_close",
            TcpDrop::CtlQueueFull => "ctl_queue_full",
            TcpDrop::RateLimited => "rate_limited",
        }
    }
}

/// Counters of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Segments received.
    pub segs_in: u64,
    /// Segments sent (a super-segment counts as the segments it will be cut into).
    pub segs_out: u64,
    /// Payload bytes delivered in order to the receive buffer.
    pub bytes_received: u64,
    /// Payload bytes acknowledged by the peer.
    pub bytes_acked: u64,
    /// Segments retransmitted.
    pub retransmits: u64,
    /// Retransmission timeouts.
    pub rto_events: u64,
    /// Fast retransmits (recoveries entered on duplicate ACKs or SACK).
    pub fast_retransmits: u64,
    /// Duplicate ACKs received.
    pub dup_acks: u64,
    /// Out-of-order segments received.
    pub ooo_segments: u64,
    /// Zero-window probes sent.
    pub window_probes: u64,
    /// Keep-alive probes sent.
    pub keepalive_probes: u64,
}

/// A snapshot of one connection (Linux's `tcp_info`, abridged).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TcpInfo {
    /// State.
    pub state: TcpState,
    /// Local endpoint.
    pub local: std::net::SocketAddrV4,
    /// Remote endpoint.
    pub remote: std::net::SocketAddrV4,
    /// Sender MSS (payload bytes per segment, options excluded).
    pub mss: u16,
    /// Congestion window in bytes.
    pub cwnd: u32,
    /// Slow-start threshold in bytes.
    pub ssthresh: u32,
    /// Peer's receive window in bytes.
    pub snd_wnd: u32,
    /// Bytes sent and not acknowledged.
    pub unacked: u32,
    /// Bytes queued, not yet sent.
    pub unsent: u32,
    /// In-order bytes waiting to be read.
    pub readable: u32,
    /// Smoothed RTT.
    pub srtt: Option<Duration>,
    /// Current retransmission timeout.
    pub rto: Duration,
    /// RTT variation.
    pub rttvar: Duration,
    /// Timestamps, window scaling and SACK in use.
    pub ts: bool,
    /// Window scaling in use: (our shift, the peer's shift).
    pub wscale: Option<(u8, u8)>,
    /// SACK in use.
    pub sack: bool,
    /// Congestion control.
    pub congestion: CcAlgorithm,
    /// Counters.
    pub stats: ConnStats,
}

/// Stack-wide TCP counters. Single writer (the worker that owns the stack).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Connections by state now, indexed by `TcpState as usize` (TIME-WAIT entries included).
    pub states: [u64; TcpState::COUNT],
    /// Connections started by `connect` (RFC 1213 `tcpActiveOpens`).
    pub active_opens: u64,
    /// Connections started by a SYN to a listener (`tcpPassiveOpens`).
    pub passive_opens: u64,
    /// Connections handed out by `accept`.
    pub accepts: u64,
    /// Active opens that failed (refused or timed out).
    pub connect_failures: u64,
    /// RSTs sent.
    pub resets_sent: u64,
    /// RSTs received that reset a connection.
    pub resets_received: u64,
    /// Segments received (coalesced frames count as one).
    pub segs_in: u64,
    /// Segments sent (super-segments count as the segments they will be cut into).
    pub segs_out: u64,
    /// Super-segments (TSO) sent.
    pub tso_frames: u64,
    /// Coalesced receive frames (GRO) accepted.
    pub gro_frames: u64,
    /// Segments retransmitted.
    pub retransmits: u64,
    /// Retransmission timeouts.
    pub rto_events: u64,
    /// Fast retransmits.
    pub fast_retransmits: u64,
    /// Recoveries driven by SACK (RFC 6675).
    pub sack_recoveries: u64,
    /// Retransmissions found lost by SACK (resent without waiting for a timeout).
    pub lost_retransmits: u64,
    /// Congestion responses undone: every retransmission of the episode came back D-SACKed
    /// (RFC 2883 §5), so nothing had been lost.
    pub dsack_undos: u64,
    /// Tail-loss probes sent (RFC 8985 §7).
    pub tail_loss_probes: u64,
    /// Zero-window probes sent.
    pub window_probes: u64,
    /// Keep-alive probes sent.
    pub keepalive_probes: u64,
    /// Connections dropped by keep-alive or retransmission timeouts.
    pub timeouts: u64,
    /// Delayed ACKs sent by the timer.
    pub delayed_acks: u64,
    /// Pure ACKs sent.
    pub acks_sent: u64,
    /// Challenge ACKs sent (RFC 5961).
    pub challenge_acks: u64,
    /// SYNs refused or ACKs dropped because an accept queue was full.
    pub listen_overflows: u64,
    /// SYN cookies sent.
    pub syn_cookies_sent: u64,
    /// SYN cookies that validated (connections created from them).
    pub syn_cookies_validated: u64,
    /// ACKs to listeners whose cookie did not validate.
    pub syn_cookies_failed: u64,
    /// TIME-WAIT entries that had to be dropped early because the table was full.
    pub time_wait_overflows: u64,
    /// TIME-WAIT entries reused by a new SYN (RFC 6191) or an outgoing connect.
    pub time_wait_reused: u64,
    /// Path-MTU reductions (ICMP fragmentation needed).
    pub pmtu_updates: u64,
    /// Segments or parts dropped, by reason (`TcpDrop as usize`).
    pub drops: [u64; TcpDrop::COUNT],
}

impl TcpStats {
    /// Drops counted under `reason`.
    pub fn drops(&self, reason: TcpDrop) -> u64 {
        self.drops[reason as usize]
    }

    /// Connections in `state`.
    pub fn in_state(&self, state: TcpState) -> u64 {
        self.states[state as usize]
    }

    #[inline]
    pub(crate) fn drop(&mut self, reason: TcpDrop) {
        self.drops[reason as usize] += 1;
    }

    #[inline]
    pub(crate) fn moved(&mut self, from: TcpState, to: TcpState) {
        if from != to {
            self.states[from as usize] = self.states[from as usize].saturating_sub(1);
            self.states[to as usize] += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_bits() {
        for (i, r) in TcpDrop::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut labels: Vec<&str> = TcpDrop::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), TcpDrop::COUNT);
        let r = Ready::READABLE | Ready::PEER_CLOSED;
        assert!(r.contains(Ready::READABLE) && !r.contains(Ready::RESET));
        assert_eq!(format!("{r:?}"), "Ready(READABLE|PEER_CLOSED)");
        assert!(TcpError::Reset.to_string().contains("reset"));
        let mut s = TcpStats::default();
        s.moved(TcpState::Closed, TcpState::SynSent);
        assert_eq!(s.in_state(TcpState::SynSent), 1);
        s.drop(TcpDrop::Paws);
        assert_eq!(s.drops(TcpDrop::Paws), 1);
    }
}
