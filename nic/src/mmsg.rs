//! # Batched datagram receive (`recvmmsg`) for kernel-socket baselines
//!
//! What it is: [`RecvBatch`], a preallocated set of receive buffers and the `mmsghdr`/`iovec`
//! arrays that point into them, so that one `recvmmsg(2)` takes up to `count` datagrams from a
//! kernel socket without allocating. The benchmark harness's `kernel` variants use it (the
//! netperf-style receiver of BENCHMARKS.md); `rustix` covers `sendmmsg` safely but has no
//! `recvmmsg`, hence this small wrapper in the one crate allowed `unsafe`.
//!
//! What it owns: the buffers (`count × slot` bytes) and the header arrays.
//!
//! What it never does: allocate after [`RecvBatch::new`], or keep a pointer into its buffers
//! across calls (the headers are rewritten before every call, so moving the value is fine).
//!
//! References: recvmmsg(2).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Receive buffers for up to `count` datagrams per call.
pub struct RecvBatch {
    buf: Box<[u8]>,
    slot: usize,
    lens: Box<[u32]>,
    received: usize,
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
}

impl core::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("count", &self.lens.len())
            .field("slot", &self.slot)
            .field("received", &self.received)
            .finish()
    }
}

// SAFETY: the raw pointers inside `hdrs` and `iovs` point only into `buf` and `iovs`, which
// this value owns (heap allocations that do not move with it); they are rewritten from the
// current addresses before every use, so no other thread can observe or use them.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// Buffers for `count` datagrams (1..=1024, the kernel's `UIO_MAXIOV`) of up to `slot`
    /// bytes each (longer ones are truncated, as `recv` would).
    pub fn new(count: usize, slot: usize) -> RecvBatch {
        let count = count.clamp(1, 1024);
        let slot = slot.max(1);
        // SAFETY: all-zero bytes are a valid `mmsghdr` and `iovec` (null pointers, zero lengths).
        let zero_hdr: libc::mmsghdr = unsafe { core::mem::zeroed() };
        // SAFETY: as above.
        let zero_iov: libc::iovec = unsafe { core::mem::zeroed() };
        RecvBatch {
            buf: vec![0u8; count * slot].into_boxed_slice(),
            slot,
            lens: vec![0u32; count].into_boxed_slice(),
            received: 0,
            hdrs: vec![zero_hdr; count].into_boxed_slice(),
            iovs: vec![zero_iov; count].into_boxed_slice(),
        }
    }

    /// Most datagrams one call takes.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Datagrams the last [`recv`](Self::recv) took.
    pub fn received(&self) -> usize {
        self.received
    }

    /// Bytes of datagram `i` of the last call (0 past the end).
    pub fn len_of(&self, i: usize) -> usize {
        if i < self.received {
            self.lens[i] as usize
        } else {
            0
        }
    }

    /// Datagram `i` of the last call (empty past the end).
    pub fn datagram(&self, i: usize) -> &[u8] {
        if i >= self.received {
            return &[];
        }
        let n = self.len_of(i).min(self.slot);
        &self.buf[i * self.slot..i * self.slot + n]
    }

    /// Takes up to [`capacity`](Self::capacity) datagrams from `fd` with one `recvmmsg`.
    /// `wait`: block until at least one arrives (`MSG_WAITFORONE`; bounded by the socket's
    /// receive timeout, `SO_RCVTIMEO`), else return at once (`MSG_DONTWAIT`). Returns how many
    /// were taken; a timeout, an empty socket or a signal is `Ok(0)`.
    pub fn recv(&mut self, fd: BorrowedFd<'_>, wait: bool) -> io::Result<usize> {
        let base = self.buf.as_mut_ptr();
        for (i, (iov, hdr)) in self.iovs.iter_mut().zip(self.hdrs.iter_mut()).enumerate() {
            // SAFETY: `i * slot + slot <= buf.len()` (there are `count` slots), so the pointer
            // stays inside `buf`.
            iov.iov_base = unsafe { base.add(i * self.slot) }.cast();
            iov.iov_len = self.slot;
            hdr.msg_hdr.msg_name = core::ptr::null_mut();
            hdr.msg_hdr.msg_namelen = 0;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = core::ptr::null_mut();
            hdr.msg_hdr.msg_controllen = 0;
            hdr.msg_hdr.msg_flags = 0;
            hdr.msg_len = 0;
        }
        let flags = if wait { libc::MSG_WAITFORONE } else { libc::MSG_DONTWAIT };
        // SAFETY: `hdrs` holds `count` initialized headers, each pointing at one live `iovec`
        // of `iovs`, which points at a `slot`-byte region of `buf`; all three are exclusively
        // borrowed for the call and the kernel writes only inside them. No timeout pointer.
        let ret = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                flags as _,
                core::ptr::null_mut(),
            )
        };
        if ret < 0 {
            self.received = 0;
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = ret as usize;
        for (len, hdr) in self.lens.iter_mut().zip(self.hdrs.iter()).take(n) {
            *len = hdr.msg_len;
        }
        self.received = n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn takes_several_datagrams_in_one_call_and_truncates_long_ones() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        for i in 0..5u8 {
            tx.send_to(&vec![i; 10 + usize::from(i)], to).unwrap();
        }
        tx.send_to(&[9u8; 100], to).unwrap();
        let mut b = RecvBatch::new(4, 64);
        assert_eq!(b.capacity(), 4);
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
        let n = b.recv(rx.as_fd(), true).unwrap();
        assert!((1..=4).contains(&n), "{n}");
        let mut got: Vec<Vec<u8>> = (0..n).map(|i| b.datagram(i).to_vec()).collect();
        while got.len() < 6 {
            let n = b.recv(rx.as_fd(), true).unwrap();
            assert!(n > 0);
            got.extend((0..n).map(|i| b.datagram(i).to_vec()));
        }
        for (i, d) in got.iter().take(5).enumerate() {
            assert_eq!(d, &vec![i as u8; 10 + i]);
        }
        assert_eq!(got[5], vec![9u8; 64], "truncated to the slot");
        assert_eq!(b.recv(rx.as_fd(), false).unwrap(), 0, "empty socket");
        assert!(b.datagram(7).is_empty());
    }
}
