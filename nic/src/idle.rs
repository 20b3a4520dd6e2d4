//! # Idle waits: a worker's sleep on its sockets, through `mio`
//!
//! What it is: [`IdleWait`], one `mio::Poll` (an epoll instance) per worker port or group, with
//! every socket of it registered once for readability when the port is built. A worker that
//! has polled empty rings for a while (the adaptive idle of `appliance::worker`) calls
//! [`IdleWait::wait`] and sleeps until a socket receives or the timeout passes; traffic wakes
//! it at once.
//!
//! Why `mio` (DESIGN.md §1): the registration is done once, the wait is one `epoll_wait` with
//! nothing rebuilt per sleep (a `poll(2)` list had to be assembled each time), and the same
//! registry can take further descriptors (an eventfd to wake a worker early) without changing
//! the wait.
//!
//! How readiness works here: `mio` registers edge-triggered. An AF_XDP socket signals an edge
//! for every frame the kernel puts on its RX ring, so a frame that arrives between the
//! worker's last look at the ring and its sleep still ends the sleep at once. Callers look at
//! their rings before they wait (see `XskGroup::wait_rx`), so frames that were already there
//! never depend on an edge.
//!
//! What it never does: sit on the fast path. It is called only after a spell of empty polls.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

/// Events taken per wait: one is enough to know that something is readable.
const EVENTS: usize = 8;

/// An epoll instance over the sockets of one port or group.
pub struct IdleWait {
    poll: Poll,
    events: Events,
}

impl std::fmt::Debug for IdleWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleWait").finish_non_exhaustive()
    }
}

impl IdleWait {
    /// An empty set.
    pub fn new() -> io::Result<IdleWait> {
        Ok(IdleWait { poll: Poll::new()?, events: Events::with_capacity(EVENTS) })
    }

    /// Registers `fd` for readability under `token` (the caller's index of the socket). The
    /// descriptor must stay open while registered; closing it removes it from the set.
    pub fn register(&self, fd: RawFd, token: usize) -> io::Result<()> {
        self.poll.registry().register(&mut SourceFd(&fd), Token(token), Interest::READABLE)
    }

    /// Sleeps until a registered socket becomes readable or `timeout` passes (`None`: no
    /// limit). Returns whether a socket signalled; an interrupted wait returns `false`.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => Ok(!self.events.is_empty()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// [`IdleWait::wait`] with a `poll(2)`-style timeout in milliseconds (negative: no limit).
    pub fn wait_ms(&mut self, timeout_ms: i32) -> io::Result<bool> {
        let t = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        self.wait(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    #[test]
    fn a_wait_ends_on_data_or_at_its_timeout() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut w = IdleWait::new().unwrap();
        w.register(b.as_raw_fd(), 0).unwrap();
        let t0 = Instant::now();
        assert!(!w.wait(Some(Duration::from_millis(30))).unwrap(), "nothing to read yet");
        assert!(t0.elapsed() >= Duration::from_millis(25));
        a.write_all(b"x").unwrap();
        let t1 = Instant::now();
        assert!(w.wait_ms(5_000).unwrap(), "readable after a write");
        assert!(t1.elapsed() < Duration::from_secs(2), "woken by the data, not the timeout");
    }
}
