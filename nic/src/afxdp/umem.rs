//! # UMEM: the frame memory of one AF_XDP socket
//!
//! What it is: one anonymous mapping of `frames × frame_size` bytes registered with the kernel
//! (`XDP_UMEM_REG`, aligned chunk mode), and the user-space bookkeeping of its frames: the free
//! list and the set of frames **held** by the user.
//!
//! What it owns: the mapping; which frames are free; which are held. The rings own the rest
//! (fill, RX, TX, completion; see `socket.rs`).
//!
//! Invariants:
//! - `frame_size` is a power of two (2048 or 4096), so a frame's chunk is `addr >> shift` and
//!   any address inside a chunk maps back to it;
//! - a chunk is on the free list at most once and never while held;
//! - slices into the mapping are handed out only for held chunks (the kernel never writes a
//!   chunk we hold: it writes only chunks we posted on the fill ring), so no Rust reference
//!   aliases memory the kernel is writing.

use std::io;

use super::sys::Mmap;

/// Frame memory plus its free list and held set.
#[derive(Debug)]
pub(crate) struct Umem {
    map: Mmap,
    shift: u32,
    frames: u32,
    free: Vec<u64>,
    held: Vec<u64>,
    held_count: u32,
}

impl Umem {
    /// Maps and zeroes `frames` chunks of `frame_size` bytes; all start on the free list.
    pub(crate) fn new(frames: u32, frame_size: u32) -> io::Result<Umem> {
        debug_assert!(frame_size.is_power_of_two());
        let map = Mmap::anonymous(frames as usize * frame_size as usize)?;
        // Free list popped from the back: push in reverse so low addresses go out first.
        let free = (0..u64::from(frames)).rev().map(|i| i * u64::from(frame_size)).collect();
        let words = (frames as usize).div_ceil(64);
        Ok(Umem {
            map,
            shift: frame_size.trailing_zeros(),
            frames,
            free,
            held: vec![0; words],
            held_count: 0,
        })
    }

    /// The registration the kernel needs (`XDP_UMEM_REG`).
    pub(crate) fn registration(&self) -> libc::xdp_umem_reg {
        libc::xdp_umem_reg {
            addr: self.map.as_ptr() as u64,
            len: self.map.len() as u64,
            chunk_size: self.frame_size(),
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        }
    }

    pub(crate) fn frame_size(&self) -> u32 {
        1 << self.shift
    }

    pub(crate) fn frames(&self) -> u32 {
        self.frames
    }

    /// Start of the chunk that contains `addr`.
    #[inline]
    pub(crate) fn chunk_base(&self, addr: u64) -> u64 {
        addr >> self.shift << self.shift
    }

    #[inline]
    fn chunk(&self, addr: u64) -> Option<usize> {
        let c = (addr >> self.shift) as usize;
        (c < self.frames as usize).then_some(c)
    }

    /// Whether the user holds the frame containing `addr`.
    #[inline]
    pub(crate) fn is_held(&self, addr: u64) -> bool {
        match self.chunk(addr) {
            Some(c) => self.held[c / 64] & (1 << (c % 64)) != 0,
            None => false,
        }
    }

    /// Marks the frame containing `addr` held (it came off the RX ring or the free list).
    #[inline]
    pub(crate) fn hold(&mut self, addr: u64) {
        if let Some(c) = self.chunk(addr) {
            let bit = 1u64 << (c % 64);
            if self.held[c / 64] & bit == 0 {
                self.held[c / 64] |= bit;
                self.held_count += 1;
            }
        }
    }

    /// Ends the hold on the frame containing `addr`. Returns false (and changes nothing) if it
    /// was not held: a double free or a forged descriptor.
    #[inline]
    pub(crate) fn release(&mut self, addr: u64) -> bool {
        let Some(c) = self.chunk(addr) else { return false };
        let bit = 1u64 << (c % 64);
        if self.held[c / 64] & bit == 0 {
            return false;
        }
        self.held[c / 64] &= !bit;
        self.held_count -= 1;
        true
    }

    pub(crate) fn held_count(&self) -> u32 {
        self.held_count
    }

    /// Takes a free chunk (its base address).
    #[inline]
    pub(crate) fn pop_free(&mut self) -> Option<u64> {
        self.free.pop()
    }

    /// Puts a chunk back on the free list. The caller guarantees it is in no other state.
    #[inline]
    pub(crate) fn push_free(&mut self, addr: u64) {
        debug_assert!(self.free.len() < self.frames as usize);
        self.free.push(self.chunk_base(addr));
    }

    pub(crate) fn free_count(&self) -> u32 {
        self.free.len() as u32
    }

    pub(crate) fn free_list(&self) -> &[u64] {
        &self.free
    }

    /// Whether `[addr, addr + len)` lies inside one chunk.
    #[inline]
    fn in_one_chunk(&self, addr: u64, len: usize) -> bool {
        let end = addr.checked_add(len as u64);
        matches!(end, Some(e) if self.chunk(addr).is_some() && (e == addr || self.chunk_base(e - 1) == self.chunk_base(addr)))
    }

    /// Bytes `[addr, addr + len)` of a held frame.
    ///
    /// Panics if the frame is not held or the range leaves its chunk: both are bugs in the
    /// caller (a forged or stale descriptor), never a consequence of packet contents.
    #[inline]
    pub(crate) fn bytes(&self, addr: u64, len: usize) -> &[u8] {
        assert!(
            self.is_held(addr) && self.in_one_chunk(addr, len),
            "af_xdp: frame {addr:#x}+{len} is not held by the caller or leaves its chunk"
        );
        // SAFETY: the range lies inside the mapping (its chunk index is < frames) and inside one
        // chunk; the chunk is held, so the kernel does not write it, and the returned borrow of
        // `self` prevents the hold from ending while the slice lives.
        unsafe { core::slice::from_raw_parts(self.map.as_ptr().add(addr as usize), len) }
    }

    /// Mutable bytes `[addr, addr + len)` of a held frame. Panics like [`Umem::bytes`].
    #[inline]
    pub(crate) fn bytes_mut(&mut self, addr: u64, len: usize) -> &mut [u8] {
        assert!(
            self.is_held(addr) && self.in_one_chunk(addr, len),
            "af_xdp: frame {addr:#x}+{len} is not held by the caller or leaves its chunk"
        );
        // SAFETY: as in `bytes`; in addition the `&mut self` borrow makes this the only Rust
        // reference into the mapping while it lives.
        unsafe { core::slice::from_raw_parts_mut(self.map.as_ptr().add(addr as usize), len) }
    }

    /// Bytes from `addr` to the end of its chunk.
    #[inline]
    pub(crate) fn room(&self, addr: u64) -> usize {
        (self.chunk_base(addr) + u64::from(self.frame_size()) - addr) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_release_and_free_list() {
        let mut u = Umem::new(8, 2048).unwrap();
        assert_eq!(u.free_count(), 8);
        let a = u.pop_free().unwrap();
        assert_eq!(a, 0, "low addresses first");
        u.hold(a + 256);
        assert!(u.is_held(a));
        assert_eq!(u.held_count(), 1);
        u.bytes_mut(a + 256, 64).fill(7);
        assert_eq!(u.bytes(a + 256, 64)[63], 7);
        assert!(u.release(a + 300));
        assert!(!u.release(a), "double release is refused");
        u.push_free(a + 256);
        assert_eq!(u.free_count(), 8);
        assert_eq!(*u.free_list().last().unwrap(), 0);
    }

    #[test]
    #[should_panic(expected = "not held")]
    fn touching_a_frame_not_held_panics() {
        let u = Umem::new(4, 2048).unwrap();
        let _ = u.bytes(0, 10);
    }

    #[test]
    #[should_panic(expected = "leaves its chunk")]
    fn a_range_crossing_chunks_panics() {
        let mut u = Umem::new(4, 2048).unwrap();
        u.hold(0);
        let _ = u.bytes(2000, 100);
    }

    #[test]
    fn out_of_range_addresses_are_never_held() {
        let mut u = Umem::new(4, 2048).unwrap();
        u.hold(4 * 2048);
        assert_eq!(u.held_count(), 0);
        assert!(!u.release(1 << 40));
    }
}
