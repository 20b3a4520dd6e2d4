//! # AF_XDP rings
//!
//! What it is: the four single-producer/single-consumer rings an AF_XDP socket shares with the
//! kernel, mapped from the socket: fill and TX (we produce, [`ProdRing`]), RX and completion
//! (we consume, [`ConsRing`]).
//!
//! How batching works: the side that writes acquires `n` slots against a **cached** copy of the
//! other side's index (re-reading the shared index only when the cache says there is not enough
//! room or data), writes the `n` entries, and publishes them with **one** release store of its
//! own index. The other side's index is read with an acquire load. This is the protocol of
//! `Documentation/networking/af_xdp.rst` ("Rings") and of libxdp's `xsk.h`.
//!
//! Invariants: ring sizes are powers of two; free-running `u32` indices, masked on access; a
//! slot is written only between our cached producer and the consumer's index plus the size,
//! and read only between our cached consumer and the producer's index.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, Ordering};

use super::sys::Mmap;

/// The shared part of one ring: the mapping and pointers into it.
#[derive(Debug)]
struct RingMap {
    _map: Mmap,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut u8,
    size: u32,
}

// SAFETY: the raw pointers point into `map`, which moves with the ring; the ring has exactly
// one user-space owner (the port), and the kernel side synchronizes through the atomics.
unsafe impl Send for RingMap {}

impl RingMap {
    fn new(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
        elem: usize,
    ) -> io::Result<RingMap> {
        let len = off.desc as usize + size as usize * elem;
        let map = Mmap::ring(fd, len, pgoff)?;
        let at = |o: u64| -> io::Result<*mut u8> {
            if o as usize + 4 > map.len() {
                return Err(io::Error::other(format!("ring offset {o} outside a {len}-byte map")));
            }
            // SAFETY: `o + 4 <= len`, so the result stays inside the mapping.
            Ok(unsafe { map.as_ptr().add(o as usize) })
        };
        let producer = at(off.producer)?.cast::<AtomicU32>();
        let consumer = at(off.consumer)?.cast::<AtomicU32>();
        let flags = at(off.flags)?.cast::<AtomicU32>();
        let descs = at(off.desc)?;
        Ok(RingMap { _map: map, producer, consumer, flags, descs, size })
    }

    #[inline]
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: the kernel places the producer index, a naturally aligned u32, at this offset
        // of the mapping (XDP_MMAP_OFFSETS); AtomicU32 has u32's layout, and the mapping lives as
        // long as `self`.
        unsafe { &*self.producer }
    }

    #[inline]
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`: an aligned u32 index inside the live mapping.
        unsafe { &*self.consumer }
    }

    #[inline]
    fn flags(&self) -> u32 {
        // SAFETY: as for `producer`: an aligned u32 inside the live mapping.
        unsafe { &*self.flags }.load(Ordering::Relaxed)
    }
}

/// A ring we produce into (fill: UMEM addresses; TX: descriptors).
#[derive(Debug)]
pub(crate) struct ProdRing<T> {
    ring: RingMap,
    cached_prod: u32,
    /// The consumer's index plus the ring size: the first slot we may not write.
    cached_end: u32,
    mask: u32,
    _elem: core::marker::PhantomData<T>,
}

impl<T: Copy> ProdRing<T> {
    pub(crate) fn new(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
    ) -> io::Result<Self> {
        let ring = RingMap::new(fd, off, size, pgoff, core::mem::size_of::<T>())?;
        let cached_prod = ring.producer().load(Ordering::Relaxed);
        let cached_end = ring.consumer().load(Ordering::Acquire).wrapping_add(size);
        Ok(ProdRing { ring, cached_prod, cached_end, mask: size - 1, _elem: Default::default() })
    }

    /// Slots free for writing, at least `want` if the ring has them (re-reads the consumer
    /// index only when the cached view has fewer).
    #[inline]
    pub(crate) fn free(&mut self, want: u32) -> u32 {
        let free = self.cached_end.wrapping_sub(self.cached_prod);
        if free >= want {
            return free;
        }
        self.cached_end = self.ring.consumer().load(Ordering::Acquire).wrapping_add(self.ring.size);
        self.cached_end.wrapping_sub(self.cached_prod)
    }

    /// Writes entry `i` (0-based) past the producer index. The caller has checked
    /// `i < free(..)`.
    #[inline]
    pub(crate) fn write(&mut self, i: u32, value: T) {
        debug_assert!(i < self.cached_end.wrapping_sub(self.cached_prod));
        let idx = (self.cached_prod.wrapping_add(i) & self.mask) as usize;
        // SAFETY: idx <= mask < size, so the slot lies inside the descriptor array mapped in
        // `self.ring.map` (`desc + size * size_of::<T>()` bytes were mapped); slots between our
        // producer and the consumer's index + size belong to us until `submit` publishes them.
        unsafe { self.ring.descs.cast::<T>().add(idx).write(value) };
    }

    /// Publishes `n` written entries with one release store.
    #[inline]
    pub(crate) fn submit(&mut self, n: u32) {
        self.cached_prod = self.cached_prod.wrapping_add(n);
        self.ring.producer().store(self.cached_prod, Ordering::Release);
    }

    /// Whether the kernel asked to be woken up to consume this ring.
    #[inline]
    pub(crate) fn needs_wakeup(&self) -> bool {
        self.ring.flags() & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Our producer index (entries ever submitted).
    pub(crate) fn produced(&self) -> u32 {
        self.cached_prod
    }

    /// The kernel's consumer index (entries it ever took).
    pub(crate) fn kernel_consumed(&self) -> u32 {
        self.ring.consumer().load(Ordering::Acquire)
    }

    /// Reads the entries submitted and not yet consumed by the kernel (for accounting checks).
    pub(crate) fn for_each_pending(&self, mut f: impl FnMut(T)) {
        let cons = self.kernel_consumed();
        let n = self.cached_prod.wrapping_sub(cons).min(self.ring.size);
        for i in 0..n {
            let idx = (cons.wrapping_add(i) & self.mask) as usize;
            // SAFETY: idx <= mask, inside the mapped array; the entry was initialized by us
            // before `submit`. The kernel may consume it concurrently, but it never writes
            // producer-ring entries, so the read is of a stable value.
            f(unsafe { self.ring.descs.cast::<T>().add(idx).read() });
        }
    }
}

/// A ring we consume from (RX: descriptors; completion: UMEM addresses).
#[derive(Debug)]
pub(crate) struct ConsRing<T> {
    ring: RingMap,
    cached_cons: u32,
    cached_prod: u32,
    mask: u32,
    _elem: core::marker::PhantomData<T>,
}

impl<T: Copy> ConsRing<T> {
    pub(crate) fn new(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
    ) -> io::Result<Self> {
        let ring = RingMap::new(fd, off, size, pgoff, core::mem::size_of::<T>())?;
        let cached_cons = ring.consumer().load(Ordering::Relaxed);
        let cached_prod = ring.producer().load(Ordering::Acquire);
        Ok(ConsRing { ring, cached_cons, cached_prod, mask: size - 1, _elem: Default::default() })
    }

    /// Entries ready to read, at most `want` (re-reads the producer index only when the
    /// cached view has fewer than `want`).
    #[inline]
    pub(crate) fn peek(&mut self, want: u32) -> u32 {
        let mut n = self.cached_prod.wrapping_sub(self.cached_cons);
        if n < want {
            self.cached_prod = self.ring.producer().load(Ordering::Acquire);
            n = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        n.min(want)
    }

    /// Reads entry `i` (0-based) past the consumer index. The caller has checked `i < peek(..)`.
    #[inline]
    pub(crate) fn read(&self, i: u32) -> T {
        debug_assert!(i < self.cached_prod.wrapping_sub(self.cached_cons));
        let idx = (self.cached_cons.wrapping_add(i) & self.mask) as usize;
        // SAFETY: idx <= mask < size: inside the mapped array. The entry lies before the
        // producer index we loaded with acquire ordering, so the kernel's write of it is visible
        // and it stays untouched until `release` hands the slot back.
        unsafe { self.ring.descs.cast::<T>().add(idx).read() }
    }

    /// Returns `n` read slots to the kernel with one release store.
    #[inline]
    pub(crate) fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.ring.consumer().store(self.cached_cons, Ordering::Release);
    }

    /// Our consumer index (entries ever released).
    pub(crate) fn consumed(&self) -> u32 {
        self.cached_cons
    }

    /// The kernel's producer index (entries it ever produced).
    pub(crate) fn kernel_produced(&self) -> u32 {
        self.ring.producer().load(Ordering::Acquire)
    }

    /// Reads the entries produced and not yet released (for accounting checks).
    pub(crate) fn for_each_pending(&self, mut f: impl FnMut(T)) {
        let prod = self.kernel_produced();
        let n = prod.wrapping_sub(self.cached_cons).min(self.ring.size);
        for i in 0..n {
            let idx = (self.cached_cons.wrapping_add(i) & self.mask) as usize;
            // SAFETY: inside the mapped array (idx <= mask); entries before the acquired
            // producer index are initialized and stable until we release them.
            f(unsafe { self.ring.descs.cast::<T>().add(idx).read() });
        }
    }
}
