//! # TCP source: write the test pattern
//!
//! What it is: the handler of a source connection (a `--tcp-source` listener's, or a client
//! connection with [`super::Role::Source`]). It writes the test pattern
//! ([`super::pattern_at`]: byte `i` of the stream is [`super::pattern_byte`]`(i)`, so a
//! receiver can check every byte) in writes of a fixed size, as netperf's TCP_STREAM sender
//! does, until the send buffer refuses more; the stack's `WRITABLE` event brings it back. With
//! a byte limit it shuts down its sending side once everything was written. Whatever the
//! peer sends is read and discarded; when the peer's stream ends, the connection is closed.
//!
//! What it owns: its write size, limit and progress.
//!
//! What it never does: allocate or copy through an intermediate buffer (each write copies
//! from a static pattern table into the send buffer), or write past what the send buffer
//! takes (back-pressure is the stack's `WouldBlock`).

use libos::tcp::{Ready, Tcp, TcpError, TcpHandle};

use super::{pattern_at, sink, Next, SCRATCH};

/// A source connection's progress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source {
    write: usize,
    limit: Option<u64>,
    shut: bool,
}

impl Source {
    /// Writes of `write` bytes (clamped to 1..=[`SCRATCH`]), `limit` bytes in all (if any).
    pub(crate) fn new(write: usize, limit: Option<u64>) -> Source {
        Source { write: write.clamp(1, SCRATCH), limit, shut: false }
    }

    pub(crate) fn on_event(
        &mut self,
        tcp: &mut Tcp,
        h: TcpHandle,
        ready: Ready,
        bytes_in: &mut u64,
        bytes_out: &mut u64,
    ) -> Next {
        let eof = match sink::drain(tcp, h, bytes_in) {
            Ok(eof) => eof,
            Err(_) => return Next::Fail,
        };
        if eof {
            // The peer is done: so are we (what we queued still goes out before our FIN).
            return Next::Close;
        }
        if ready.intersects(Ready::RESET | Ready::TIMED_OUT) {
            return Next::Fail;
        }
        if self.shut {
            return Next::Keep;
        }
        loop {
            let left = self.limit.map_or(u64::MAX, |l| l.saturating_sub(*bytes_out));
            if left == 0 {
                self.shut = tcp.shutdown(h).is_ok();
                return if self.shut { Next::Keep } else { Next::Fail };
            }
            let n = (self.write as u64).min(left) as usize;
            match tcp.write(h, pattern_at(*bytes_out, n)) {
                Ok(k) => {
                    *bytes_out += k as u64;
                    if k < n {
                        return Next::Keep;
                    }
                }
                Err(TcpError::WouldBlock) => return Next::Keep,
                Err(_) => return Next::Fail,
            }
        }
    }
}
