//! # Preferred busy polling of a socket's NAPI context
//!
//! What it is: the three socket options that let the thread polling a socket run the device's
//! receive work (its NAPI poll: for AF_XDP the XDP program and the copy into the socket)
//! itself, inside `recvfrom`/`sendto` on the socket, instead of leaving it to a softirq or a
//! NAPI kthread: `SO_BUSY_POLL` (how long one busy poll may spin, µs), `SO_PREFER_BUSY_POLL`
//! (the busy poller owns the NAPI context: with the device's `napi_defer_hard_irqs` and
//! `gro_flush_timeout` set, the kernel stops scheduling it as a softirq while the poller keeps
//! polling) and `SO_BUSY_POLL_BUDGET` (packets per poll).
//!
//! What it never does: change device settings (`/sys/class/net/<dev>/napi_defer_hard_irqs`,
//! `gro_flush_timeout`: the caller's business) or poll by itself. A worker drives the busy poll
//! with a non-blocking zero-length `recvfrom` on the socket once per iteration.
//!
//! References: Documentation/networking/napi.rst ("busy polling", "preferred busy polling"),
//! Documentation/networking/af_xdp.rst; socket(7).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `SO_BUSY_POLL` (include/uapi/asm-generic/socket.h).
const SO_BUSY_POLL: libc::c_int = 46;
/// `SO_PREFER_BUSY_POLL`.
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
/// `SO_BUSY_POLL_BUDGET`.
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
/// `SO_INCOMING_NAPI_ID`.
const SO_INCOMING_NAPI_ID: libc::c_int = 56;

/// Busy-polling settings of one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyPoll {
    /// Longest one busy poll spins (µs); a non-blocking poll runs the NAPI poll once anyway.
    pub usecs: u32,
    /// Packets one NAPI poll may process.
    pub budget: u32,
}

impl Default for BusyPoll {
    fn default() -> BusyPoll {
        BusyPoll { usecs: 20, budget: 64 }
    }
}

fn set(fd: BorrowedFd<'_>, opt: libc::c_int, value: u32, name: &str) -> io::Result<()> {
    let v = value as libc::c_int;
    // SAFETY: `v` is a live c_int and we pass its size; the kernel only reads it.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            core::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setsockopt({name}, {value}): {e}")));
    }
    Ok(())
}

/// Turns preferred busy polling on for socket `fd` (an AF_XDP socket, say). Raising
/// `SO_BUSY_POLL` above `net.core.busy_read` needs `CAP_NET_ADMIN`.
pub fn enable(fd: BorrowedFd<'_>, cfg: BusyPoll) -> io::Result<()> {
    set(fd, SO_PREFER_BUSY_POLL, 1, "SO_PREFER_BUSY_POLL")?;
    set(fd, SO_BUSY_POLL, cfg.usecs, "SO_BUSY_POLL")?;
    set(fd, SO_BUSY_POLL_BUDGET, cfg.budget, "SO_BUSY_POLL_BUDGET")
}

/// The NAPI context the socket's traffic last came from (`SO_INCOMING_NAPI_ID`); 0 when the
/// kernel marked none, in which case busy polling the socket polls nothing.
pub fn incoming_napi_id(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut v: libc::c_uint = 0;
    let mut len = core::mem::size_of::<libc::c_uint>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live and sized for the option; the kernel writes at most `len`
    // bytes into `v` and updates `len`.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_INCOMING_NAPI_ID,
            (&mut v as *mut libc::c_uint).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("getsockopt(SO_INCOMING_NAPI_ID): {e}")));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn the_options_are_accepted_by_a_udp_socket() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        // As root (the suite runs as root) every value is accepted; otherwise SO_BUSY_POLL
        // above busy_read is refused with EPERM, which must come back as an error.
        match enable(s.as_fd(), BusyPoll::default()) {
            Ok(()) => {}
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}"),
        }
        assert_eq!(incoming_napi_id(s.as_fd()).unwrap(), 0, "nothing received yet");
    }
}
