//! # TCP sink: read and discard
//!
//! What it is: the handler of a sink connection (a `--tcp-sink` listener's, or a client
//! connection with [`super::Role::Sink`]): every readable byte is consumed in place
//! ([`Tcp::read_with`], zero copy, nothing stored) and counted; at the end of the peer's
//! stream the connection is closed.
//!
//! What it owns: nothing but the count it is handed.
//!
//! What it never does: copy, allocate, or leave readable bytes behind (it drains the receive
//! buffer on every event, so the advertised window reopens at once: the sink never
//! back-pressures its peer).

use libos::tcp::{Ready, Tcp, TcpError, TcpHandle};

use super::Next;

/// Drains `h`; `bytes_in` counts what was read.
pub(crate) fn on_event(tcp: &mut Tcp, h: TcpHandle, ready: Ready, bytes_in: &mut u64) -> Next {
    match drain(tcp, h, bytes_in) {
        Ok(true) => Next::Close,
        Ok(false) if ready.intersects(Ready::RESET | Ready::TIMED_OUT) => Next::Fail,
        Ok(false) => Next::Keep,
        Err(_) => Next::Fail,
    }
}

/// Reads and discards everything readable; `Ok(true)` at the end of the peer's stream.
pub(crate) fn drain(tcp: &mut Tcp, h: TcpHandle, bytes_in: &mut u64) -> Result<bool, TcpError> {
    loop {
        match tcp.read_with(h, |d| d.len()) {
            Ok(0) => return Ok(true),
            Ok(n) => *bytes_in += n as u64,
            Err(TcpError::WouldBlock) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}
