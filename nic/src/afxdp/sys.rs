//! # System-call helpers of the AF_XDP backend
//!
//! What it is: the thin layer between the backend and the kernel: socket options, `mmap`,
//! interface lookups, the ethtool channel query and the transmit/fill wake-ups. Every call goes
//! through [`check`], which turns `-1` into an [`io::Error`] named after the call.
//!
//! What it owns: [`Mmap`], a mapping unmapped on drop.
//!
//! References: `Documentation/networking/af_xdp.rst`, `include/uapi/linux/if_xdp.h`,
//! `include/uapi/linux/ethtool.h` (kernel 6.18).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// `XDP_MAX_TX_SKB_BUDGET` (Linux 6.17+, `if_xdp.h`): descriptors one copy-mode `sendto`
/// may transmit; the default is 32.
pub(crate) const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// Returns `ret`, or the last OS error named after `call` when `ret` is negative.
pub(crate) fn check(ret: libc::c_int, call: &'static str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{call}: {e}")))
    } else {
        Ok(ret)
    }
}

/// Opens an `AF_XDP` socket.
pub(crate) fn xsk_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers; a non-negative return is a new descriptor that we
    // own exclusively.
    let fd = check(
        unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) },
        "socket(AF_XDP)",
    )?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, SOL_XDP, name, value)`.
pub(crate) fn set_xdp_opt<T: Copy>(
    fd: BorrowedFd<'_>,
    name: libc::c_int,
    value: &T,
    call: &'static str,
) -> io::Result<()> {
    // SAFETY: `value` points to a live, initialized `T` of `size_of::<T>()` bytes for the
    // duration of the call; the kernel only reads it.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            name,
            (value as *const T).cast(),
            core::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    check(ret, call).map(|_| ())
}

/// Plain C structs of integers, for which all-zero bytes are a valid value.
///
/// # Safety
/// Implement only for `#[repr(C)]` types made of integers (no references, no niches).
pub(crate) unsafe trait Zeroable: Copy {}
// SAFETY: all four are C structs of u32/u64 fields (if_xdp.h).
unsafe impl Zeroable for libc::xdp_mmap_offsets {}
// SAFETY: as above.
unsafe impl Zeroable for libc::xdp_options {}
// SAFETY: as above.
unsafe impl Zeroable for libc::xdp_statistics {}
// SAFETY: as above.
unsafe impl Zeroable for u32 {}

/// `getsockopt(fd, SOL_XDP, name)` into a zeroed `T`; returns the value and the length the
/// kernel wrote (older kernels write shorter structs).
pub(crate) fn get_xdp_opt<T: Zeroable>(
    fd: BorrowedFd<'_>,
    name: libc::c_int,
    call: &'static str,
) -> io::Result<(T, usize)> {
    // SAFETY: `T: Zeroable` promises all-zero bytes are a valid `T`.
    let mut value: T = unsafe { core::mem::zeroed() };
    let mut len = core::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a live `T` of `len` bytes that the kernel may write up to `len` bytes
    // into; `len` is a valid in/out length.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    };
    check(ret, call)?;
    Ok((value, len as usize))
}

/// `bind(2)` of an AF_XDP socket.
pub(crate) fn bind(fd: BorrowedFd<'_>, addr: &libc::sockaddr_xdp) -> io::Result<()> {
    // SAFETY: `addr` points to a live `sockaddr_xdp` of the length passed.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (addr as *const libc::sockaddr_xdp).cast(),
            core::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    };
    check(ret, "bind").map(|_| ())
}

/// Wakes the kernel to transmit what is on the TX ring (copy mode transmits synchronously in
/// this call). A full device or completion ring (`EAGAIN`, `EBUSY`, `ENOBUFS`) is not an error:
/// the frames stay on the ring for the next kick. Returns whether the kernel accepted the kick.
pub(crate) fn kick_tx(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: a zero-length send with null buffer and address is what the AF_XDP API defines
    // as a transmit wake-up; the kernel dereferences no pointer.
    let ret = unsafe {
        libc::sendto(fd.as_raw_fd(), core::ptr::null(), 0, libc::MSG_DONTWAIT, core::ptr::null(), 0)
    };
    if ret >= 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN) => Ok(false),
        _ => Err(io::Error::new(e.kind(), format!("sendto (tx kick): {e}"))),
    }
}

/// Wakes the kernel to fill the RX ring (needed only when the fill ring asks for it).
pub(crate) fn kick_rx(fd: BorrowedFd<'_>) {
    // SAFETY: as for `kick_tx`, a zero-length receive is a wake-up; no pointer is dereferenced.
    let _ = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            core::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        )
    };
}

/// Most sockets in one group (one worker's queues).
pub(crate) const MAX_GROUP: usize = 64;

/// A memory mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; the owner decides who touches which bytes (ring indices,
// held frames), and the pointer itself may move between threads.
unsafe impl Send for Mmap {}

impl Mmap {
    /// Anonymous private memory of `len` bytes, populated up front (the UMEM).
    pub(crate) fn anonymous(len: usize) -> io::Result<Mmap> {
        // SAFETY: an anonymous mapping with a null hint aliases nothing; failure is checked.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        Self::from_ret(ptr, len, "mmap(umem)")
    }

    /// A ring shared with the kernel: `len` bytes of socket `fd` at page offset `pgoff`.
    pub(crate) fn ring(fd: BorrowedFd<'_>, len: usize, pgoff: u64) -> io::Result<Mmap> {
        // SAFETY: mapping a socket's ring region with a null hint aliases no Rust memory;
        // failure is checked.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff as libc::off_t,
            )
        };
        Self::from_ret(ptr, len, "mmap(ring)")
    }

    fn from_ret(ptr: *mut libc::c_void, len: usize, call: &'static str) -> io::Result<Mmap> {
        if ptr == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("{call} of {len} bytes: {e}")));
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mmap { ptr, len })
    }

    /// First byte of the mapping.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping we created and still own; nothing borrows it
        // past the owner's lifetime.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Interface index of `name` in the calling thread's network namespace.
pub(crate) fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// `struct ethtool_channels` (`include/uapi/linux/ethtool.h`).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// RX queues of interface `name` (`ETHTOOL_GCHANNELS`: rx + combined channels), or `None` when
/// the driver does not say.
pub(crate) fn rx_queues(name: &str) -> Option<u32> {
    if name.len() >= libc::IFNAMSIZ {
        return None;
    }
    let mut ch = EthtoolChannels { cmd: ETHTOOL_GCHANNELS, ..Default::default() };
    // SAFETY: a zeroed `ifreq` is a valid value of this plain-data struct.
    let mut ifr: libc::ifreq = unsafe { core::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut ch as *mut EthtoolChannels).cast();
    // SAFETY: socket(2) takes no pointers; the result is checked and owned below.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return None;
    }
    // SAFETY: `s` is a new descriptor owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: SIOCETHTOOL reads `ifr` and writes into `ch` through `ifr_data`; both are live
    // for the duration of the call.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    if ret < 0 {
        return None;
    }
    let n = ch.rx_count + ch.combined_count;
    (n > 0).then_some(n)
}
