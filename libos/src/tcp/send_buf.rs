//! # The send buffer of one connection
//!
//! What it is: [`SendBuf`], a byte ring over memory the connection table lends (one fixed
//! region per connection slot, see [`crate::tcp`]): the bytes the application wrote that the
//! peer has not acknowledged yet, sent or not. Byte `i` of the buffer is sequence number
//! `buf_seq + i` of the connection (the connection keeps `buf_seq`).
//!
//! What it owns: only two indices; the memory is passed to every call, so the buffer itself is
//! `Copy` and 8 bytes large.
//!
//! What it never does: allocate, grow, or panic: a write takes what fits and says how much
//! (back-pressure); reads of ranges past the stored bytes are clamped.
//!
//! Invariants: `len <= mem.len()`; `start < mem.len()` (or 0 for empty memory).

/// A byte ring (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SendBuf {
    start: u32,
    len: u32,
}

impl SendBuf {
    /// Bytes stored (unacknowledged, sent or not).
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Free bytes in memory of `cap` bytes.
    #[inline]
    pub fn free(&self, cap: usize) -> usize {
        cap.saturating_sub(self.len as usize)
    }

    /// Appends as much of `data` as fits; returns how many bytes were taken.
    pub fn write(&mut self, mem: &mut [u8], data: &[u8]) -> usize {
        let mut done = 0;
        while done < data.len() {
            let n = self.write_with(mem, |room| {
                let n = room.len().min(data.len() - done);
                room[..n].copy_from_slice(&data[done..done + n]);
                n
            });
            if n == 0 {
                break;
            }
            done += n;
        }
        done
    }

    /// Lends the next contiguous free region to `f`, which fills a prefix of it and returns how
    /// many bytes it wrote (clamped to the region); returns that count.
    pub fn write_with(&mut self, mem: &mut [u8], f: impl FnOnce(&mut [u8]) -> usize) -> usize {
        let cap = mem.len();
        if self.len as usize >= cap {
            return 0;
        }
        let (s, l) = (self.start as usize, self.len as usize);
        let (a, b) = if s + l < cap { (s + l, cap) } else { (s + l - cap, s) };
        let room = &mut mem[a..b];
        let n = f(room).min(room.len());
        self.len += n as u32;
        n
    }

    /// Bytes `[off, off + len)` of the stored data as at most two slices (the ring may wrap),
    /// clamped to what is stored.
    pub fn slices<'m>(&self, mem: &'m [u8], off: usize, len: usize) -> (&'m [u8], &'m [u8]) {
        let cap = mem.len();
        let stored = self.len as usize;
        if off >= stored || cap == 0 {
            return (&[], &[]);
        }
        let len = len.min(stored - off);
        let a = (self.start as usize + off) % cap;
        let first = len.min(cap - a);
        (&mem[a..a + first], &mem[..len - first])
    }

    /// Forgets the first `n` bytes (acknowledged by the peer).
    pub fn consume(&mut self, cap: usize, n: usize) {
        let n = n.min(self.len as usize);
        if cap == 0 {
            return;
        }
        self.start = ((self.start as usize + n) % cap) as u32;
        self.len -= n as u32;
        if self.len == 0 {
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps_and_clamps() {
        let mut mem = [0u8; 8];
        let mut b = SendBuf::default();
        assert_eq!(b.write(&mut mem, b"abcdef"), 6);
        b.consume(8, 4);
        assert_eq!(b.write(&mut mem, b"ghijklmn"), 6);
        assert_eq!(b.len(), 8);
        assert_eq!(b.free(8), 0);
        let (x, y) = b.slices(&mem, 0, 100);
        assert_eq!([x, y].concat(), b"efghijkl");
        let (x, y) = b.slices(&mem, 3, 2);
        assert_eq!([x, y].concat(), b"hi");
        assert_eq!(b.slices(&mem, 8, 1), (&[][..], &[][..]));
        b.consume(8, 100);
        assert_eq!(b.len(), 0);
        assert_eq!(b.write(&mut [], b"x"), 0);
    }

    proptest! {
        #[test]
        fn behaves_like_a_queue(ops in proptest::collection::vec((any::<bool>(), 0usize..40), 1..60)) {
            let mut mem = [0u8; 32];
            let mut b = SendBuf::default();
            let mut model: std::collections::VecDeque<u8> = Default::default();
            let mut next = 0u8;
            for (write, n) in ops {
                if write {
                    let data: Vec<u8> = (0..n).map(|_| { next = next.wrapping_add(1); next }).collect();
                    let took = b.write(&mut mem, &data);
                    prop_assert_eq!(took, n.min(32 - model.len()));
                    model.extend(&data[..took]);
                    next = next.wrapping_sub((n - took) as u8);
                } else {
                    b.consume(32, n);
                    for _ in 0..n.min(model.len()) { model.pop_front(); }
                }
                prop_assert_eq!(b.len(), model.len());
                let (x, y) = b.slices(&mem, 0, 64);
                let got = [x, y].concat();
                prop_assert_eq!(&got[..], &model.iter().copied().collect::<Vec<_>>()[..]);
            }
        }
    }
}
