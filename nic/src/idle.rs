//! # Idle waits: a worker's sleep on its sockets, through `mio`
//!
//! What it is: [`IdleWait`], one `mio::Poll` (an epoll instance) per worker port, group or
//! queue set. A worker that has polled empty rings for a while (the adaptive idle of
//! `appliance::worker`) calls [`IdleWait::wait`] with its sockets and sleeps until one
//! receives or the timeout passes; traffic wakes it at once.
//!
//! Why the sockets are registered for the sleep only, and removed when it ends: mio registers
//! edge-triggered, so a socket registered for the worker's life collects edges while the worker
//! runs and the next sleep can end at once on a stale one. A socket added at the sleep is
//! polled by epoll as it is added: one already readable (a frame landing between the worker's
//! last look at its ring and the sleep) ends the sleep at once, nothing older does, as with
//! `poll(2)`; and while the worker runs no epoll entry sits on the sockets' wait queues. The
//! cost is two `epoll_ctl` calls per socket and sleep, on the idle path. (A version with the
//! sockets registered once, 21dd50c, was reverted after a `bench fwd` regression that a
//! profile did not tie to epoll; docs/decisions.md.)
//!
//! What it never does: sit on the fast path, or allocate (the event list is built once).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

/// Events taken per wait: one is enough to know that something is readable.
const EVENTS: usize = 8;

/// An epoll instance for the sleeps of one port, group or queue set.
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
    /// An epoll instance with nothing registered.
    pub fn new() -> io::Result<IdleWait> {
        Ok(IdleWait { poll: Poll::new()?, events: Events::with_capacity(EVENTS) })
    }

    /// Sleeps until one of `fds` is readable or `timeout` passes (`None`: no limit). Returns
    /// whether a socket was readable; an interrupted wait returns `false`. The sockets are
    /// registered for this wait only and removed before it returns.
    pub fn wait<'a, I>(&mut self, fds: I, timeout: Option<Duration>) -> io::Result<bool>
    where
        I: IntoIterator<Item = BorrowedFd<'a>> + Clone,
    {
        let mut added = 0usize;
        let mut failed = None;
        for (i, fd) in fds.clone().into_iter().enumerate() {
            let raw = fd.as_raw_fd();
            match self.poll.registry().register(&mut SourceFd(&raw), Token(i), Interest::READABLE) {
                Ok(()) => added += 1,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let result = match failed {
            Some(e) => Err(e),
            None => match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => Ok(!self.events.is_empty()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
                Err(e) => Err(e),
            },
        };
        for fd in fds.into_iter().take(added) {
            let raw = fd.as_raw_fd();
            // Only fails for a descriptor that is not registered (it is) or closed (it is
            // borrowed, so open): nothing to do either way.
            let _ = self.poll.registry().deregister(&mut SourceFd(&raw));
        }
        result
    }

    /// [`IdleWait::wait`] with a `poll(2)`-style timeout in milliseconds (negative: no limit).
    pub fn wait_ms<'a, I>(&mut self, fds: I, timeout_ms: i32) -> io::Result<bool>
    where
        I: IntoIterator<Item = BorrowedFd<'a>> + Clone,
    {
        let t = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        self.wait(fds, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    #[test]
    fn a_quiet_wait_runs_to_its_timeout_and_leaves_nothing_registered() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut w = IdleWait::new().unwrap();
        let t0 = Instant::now();
        assert!(!w.wait([a.as_fd()], Some(Duration::from_millis(50))).unwrap());
        assert!(t0.elapsed() >= Duration::from_millis(45));
        // Registered again for the next sleep: a leftover registration would fail it (EEXIST).
        assert!(!w.wait([a.as_fd()], Some(Duration::from_millis(1))).unwrap());
    }

    #[test]
    fn data_already_there_ends_the_wait_at_once_and_every_sleep_sees_it() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let (c, _d) = UnixStream::pair().unwrap();
        b.write_all(b"x").unwrap();
        let mut w = IdleWait::new().unwrap();
        for _ in 0..3 {
            let t0 = Instant::now();
            assert!(w.wait([c.as_fd(), a.as_fd()], Some(Duration::from_secs(10))).unwrap());
            assert!(t0.elapsed() < Duration::from_secs(1));
        }
    }

    #[test]
    fn data_arriving_during_the_wait_wakes_it() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut w = IdleWait::new().unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            b.write_all(b"x").unwrap();
            b
        });
        let t0 = Instant::now();
        assert!(w.wait([a.as_fd()], Some(Duration::from_secs(10))).unwrap());
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(80) && took < Duration::from_secs(5), "{took:?}");
        drop(writer.join().unwrap());
    }

    #[test]
    fn the_same_socket_twice_is_an_error_not_a_hang() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut w = IdleWait::new().unwrap();
        assert!(w.wait([a.as_fd(), a.as_fd()], Some(Duration::from_secs(10))).is_err());
        // The first registration was removed again.
        assert!(!w.wait([a.as_fd()], Some(Duration::from_millis(1))).unwrap());
    }
}
