//! # TCP echo and the sockperf server
//!
//! What it is: the handlers of echo connections ([`Echo`]: every byte back, RFC 862 over
//! TCP) and sockperf connections ([`Sockperf`]: sockperf's TCP framing, TESTING.md). sockperf
//! messages start with a 14-byte big-endian header, `u64` sequence number, `u16` flags, `u32`
//! length of the whole message (header included); the server answers a message whose flags
//! carry `PONG_REQUEST` (2) by sending it back with `CLIENT` (1) cleared, and swallows every
//! other message (the client ignores replies that still say `CLIENT`, and sends most
//! messages of `under-load` and `throughput` runs without `PONG_REQUEST`).
//!
//! What it owns: a sockperf connection's parse state (the header being read, what is left of
//! the message's body, whether it is being answered); an echo connection owns nothing.
//!
//! What it never does: read more than it can write. Both handlers copy through the services'
//! shared scratch buffer and take from the receive buffer only as many bytes as the send
//! buffer has room for, so a peer that stops reading its echoes fills our send buffer, then
//! our receive buffer, and then sees a zero window: back-pressure, never an unbounded queue.
//! When the send buffer is full they register for the stack's `WRITABLE` event (a refused
//! zero-length write) and continue from there. Nothing is allocated.
//!
//! References: RFC 862 (echo), sockperf's `Message` header (TESTING.md).

use libos::tcp::{Ready, Tcp, TcpError, TcpHandle};

use super::{Next, SCRATCH};

/// sockperf's header length.
pub const SOCKPERF_HEADER: usize = 14;
/// sockperf's flag of a client's message.
pub const SOCKPERF_CLIENT: u16 = 1;
/// sockperf's flag of a message that wants a reply.
pub const SOCKPERF_PONG_REQUEST: u16 = 2;

/// Free space in `h`'s send buffer; when there is none, asks for a `WRITABLE` event.
fn space(tcp: &mut Tcp, h: TcpHandle) -> Result<usize, TcpError> {
    let n = tcp.send_space(h)?;
    if n == 0 {
        // A refused write is what arms WRITABLE.
        match tcp.write_with(h, |_| 0) {
            Ok(_) | Err(TcpError::WouldBlock) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// An echo connection.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Echo;

impl Echo {
    pub(crate) fn on_event(
        &mut self,
        tcp: &mut Tcp,
        h: TcpHandle,
        ready: Ready,
        scratch: &mut [u8],
        bytes_in: &mut u64,
        bytes_out: &mut u64,
    ) -> Next {
        loop {
            let room = match space(tcp, h) {
                Ok(0) => break,
                Ok(n) => n.min(scratch.len()),
                Err(_) => return Next::Fail,
            };
            match tcp.read(h, &mut scratch[..room]) {
                // End of the peer's stream: everything was echoed; close (our FIN follows
                // the echoes still queued).
                Ok(0) => return Next::Close,
                Ok(n) => {
                    *bytes_in += n as u64;
                    match tcp.write(h, &scratch[..n]) {
                        Ok(k) => *bytes_out += k as u64,
                        Err(_) => return Next::Fail,
                    }
                }
                Err(TcpError::WouldBlock) => break,
                Err(_) => return Next::Fail,
            }
        }
        if ready.intersects(Ready::RESET | Ready::TIMED_OUT) {
            return Next::Fail;
        }
        Next::Keep
    }
}

/// A sockperf connection's parse state.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sockperf {
    hdr: [u8; SOCKPERF_HEADER],
    /// Header bytes read so far.
    have: usize,
    /// Body bytes of the current message still to read (after its header).
    left: usize,
    /// The current message is being answered.
    reply: bool,
}

impl Sockperf {
    /// Returns the verdict and the number of messages answered.
    pub(crate) fn on_event(
        &mut self,
        tcp: &mut Tcp,
        h: TcpHandle,
        ready: Ready,
        scratch: &mut [u8],
        bytes_in: &mut u64,
        bytes_out: &mut u64,
    ) -> (Next, u64) {
        let mut replies = 0;
        let next = self.run(tcp, h, scratch, bytes_in, bytes_out, &mut replies);
        let next = match next {
            Ok(true) => Next::Close,
            Ok(false) if ready.intersects(Ready::RESET | Ready::TIMED_OUT) => Next::Fail,
            Ok(false) => Next::Keep,
            Err(()) => Next::Fail,
        };
        (next, replies)
    }

    /// Processes what is readable and fits; `Ok(true)` at the end of the peer's stream.
    fn run(
        &mut self,
        tcp: &mut Tcp,
        h: TcpHandle,
        scratch: &mut [u8],
        bytes_in: &mut u64,
        bytes_out: &mut u64,
        replies: &mut u64,
    ) -> Result<bool, ()> {
        loop {
            if self.left == 0 && self.have < SOCKPERF_HEADER {
                // A header: read it only when an answer would fit.
                if space(tcp, h).map_err(drop)? < SOCKPERF_HEADER {
                    return Ok(false);
                }
                let got = match tcp.read(h, &mut self.hdr[self.have..]) {
                    Ok(0) => return Ok(true),
                    Ok(n) => n,
                    Err(TcpError::WouldBlock) => return Ok(false),
                    Err(_) => return Err(()),
                };
                *bytes_in += got as u64;
                self.have += got;
                if self.have < SOCKPERF_HEADER {
                    continue;
                }
                let flags = u16::from_be_bytes([self.hdr[8], self.hdr[9]]);
                let len =
                    u32::from_be_bytes([self.hdr[10], self.hdr[11], self.hdr[12], self.hdr[13]]);
                let len = len as usize;
                if len < SOCKPERF_HEADER {
                    return Err(());
                }
                self.left = len - SOCKPERF_HEADER;
                self.reply = flags & SOCKPERF_PONG_REQUEST != 0;
                if self.reply {
                    let f = flags & !SOCKPERF_CLIENT;
                    self.hdr[8..10].copy_from_slice(&f.to_be_bytes());
                    let k = tcp.write(h, &self.hdr).map_err(drop)?;
                    *bytes_out += k as u64;
                    *replies += 1;
                }
                if self.left == 0 {
                    self.have = 0;
                }
                continue;
            }
            // The body: copied back if answered, else swallowed.
            let got = if self.reply {
                let room = space(tcp, h).map_err(drop)?.min(scratch.len()).min(self.left);
                if room == 0 {
                    return Ok(false);
                }
                match tcp.read(h, &mut scratch[..room]) {
                    Ok(0) => return Ok(true),
                    Ok(n) => {
                        let k = tcp.write(h, &scratch[..n]).map_err(drop)?;
                        *bytes_out += k as u64;
                        n
                    }
                    Err(TcpError::WouldBlock) => return Ok(false),
                    Err(_) => return Err(()),
                }
            } else {
                let left = self.left;
                match tcp.read_with(h, |d| d.len().min(left)) {
                    Ok(0) => return Ok(true),
                    Ok(n) => n,
                    Err(TcpError::WouldBlock) => return Ok(false),
                    Err(_) => return Err(()),
                }
            };
            *bytes_in += got as u64;
            self.left -= got;
            if self.left == 0 {
                self.have = 0;
            }
        }
    }
}

/// A sockperf message of `len` bytes (header included, at least 14) with `seq` and `flags`.
pub fn sockperf_message(seq: u64, flags: u16, len: usize) -> Vec<u8> {
    let len = len.max(SOCKPERF_HEADER);
    let mut m = vec![0u8; len];
    m[..8].copy_from_slice(&seq.to_be_bytes());
    m[8..10].copy_from_slice(&flags.to_be_bytes());
    m[10..14].copy_from_slice(&(len as u32).to_be_bytes());
    m
}

const _: () = assert!(SCRATCH >= SOCKPERF_HEADER);
