//! # TCP connection states
//!
//! What it is: [`TcpState`], the eleven states of RFC 9293 §3.3.2 with the predicates the
//! connection code asks of them, and stable labels for metrics
//! (`xdpos_tcp_connections{state="established"}`).
//!
//! What it never does: decide transitions; those happen in the connection code (`conn`) where the events
//! are (segment arrival, user calls, timeouts), as in RFC 9293 §3.10.
//!
//! References: RFC 9293 §3.3.2 (state diagram), §3.10 (event processing).

/// A connection's state (RFC 9293 §3.3.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    /// No connection (or one that ended and waits for its handle to be closed).
    #[default]
    Closed,
    /// Waiting for connection requests (listeners only).
    Listen,
    /// SYN sent, waiting for the peer's SYN.
    SynSent,
    /// SYN received and SYN-ACK sent, waiting for the ACK of our SYN.
    SynReceived,
    /// Open: data flows both ways.
    Established,
    /// We closed first; our FIN is not yet acknowledged.
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's FIN.
    FinWait2,
    /// The peer closed; we may still send.
    CloseWait,
    /// Both closed at once; waiting for the ACK of our FIN.
    Closing,
    /// The peer closed, then we did; waiting for the ACK of our FIN.
    LastAck,
    /// Both FINs acknowledged; waiting 2 MSL for stray segments.
    TimeWait,
}

impl TcpState {
    /// Number of states.
    pub const COUNT: usize = 11;

    /// Every state, in index order.
    pub const ALL: [TcpState; TcpState::COUNT] = [
        TcpState::Closed,
        TcpState::Listen,
        TcpState::SynSent,
        TcpState::SynReceived,
        TcpState::Established,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::CloseWait,
        TcpState::Closing,
        TcpState::LastAck,
        TcpState::TimeWait,
    ];

    /// The metrics label, snake_case and stable.
    pub const fn as_str(self) -> &'static str {
        match self {
            TcpState::Closed => "closed",
            TcpState::Listen => "listen",
            TcpState::SynSent => "syn_sent",
            TcpState::SynReceived => "syn_received",
            TcpState::Established => "established",
            TcpState::FinWait1 => "fin_wait_1",
            TcpState::FinWait2 => "fin_wait_2",
            TcpState::CloseWait => "close_wait",
            TcpState::Closing => "closing",
            TcpState::LastAck => "last_ack",
            TcpState::TimeWait => "time_wait",
        }
    }

    /// Whether both sequence spaces are synchronized (ESTABLISHED and later).
    pub const fn is_synchronized(self) -> bool {
        !matches!(
            self,
            TcpState::Closed | TcpState::Listen | TcpState::SynSent | TcpState::SynReceived
        )
    }

    /// Whether the peer may still send us data (it has not sent FIN).
    pub const fn may_receive(self) -> bool {
        matches!(self, TcpState::Established | TcpState::FinWait1 | TcpState::FinWait2)
    }

    /// Whether we may still queue data (we have not closed our side).
    pub const fn may_send(self) -> bool {
        matches!(
            self,
            TcpState::SynSent | TcpState::SynReceived | TcpState::Established | TcpState::CloseWait
        )
    }
}

impl core::fmt::Display for TcpState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_and_labels() {
        for (i, s) in TcpState::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
        assert_eq!(TcpState::FinWait1.to_string(), "fin_wait_1");
        assert!(TcpState::CloseWait.is_synchronized() && !TcpState::SynReceived.is_synchronized());
        assert!(TcpState::FinWait2.may_receive() && !TcpState::CloseWait.may_receive());
        assert!(TcpState::CloseWait.may_send() && !TcpState::FinWait1.may_send());
    }
}
