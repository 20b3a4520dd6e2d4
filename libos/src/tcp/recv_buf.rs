//! # The receive buffer of one connection, with out-of-order assembly
//!
//! What it is: [`RecvBuf`], a byte ring over memory the connection table lends, holding the
//! in-order bytes the application has not read yet (`[head, head + len)`) and, past them at
//! their final places, bytes that arrived out of order. It owns `RCV.NXT` (the sequence number
//! after the in-order bytes) and the list of out-of-order ranges, which is also what the
//! connection reports as SACK blocks (RFC 2018).
//!
//! What it owns: three indices, up to [`MAX_OOO`] out-of-order ranges (sequence numbers,
//! sorted, disjoint and non-adjacent, all above `RCV.NXT`), and the starts of the most recently
//! received out-of-order segments (to put the newest block first, RFC 2018 §4).
//!
//! What it never does: allocate, hold more than the memory it is given (bytes past the end are
//! refused and counted by the caller), deliver a byte twice or out of order, or panic.
//!
//! Invariants: `len <= mem.len()`; every out-of-order range `[s, e)` has `RCV.NXT < s < e` and
//! `e - RCV.NXT <= mem.len() - len` (it lies inside the memory); ranges never touch.
//!
//! References: RFC 9293 §3.10.7.4 (segment text processing), RFC 2018 §4 (which blocks to
//! report, most recent first).

use super::seq;
use crate::wire::SackBlocks;

/// Most out-of-order ranges a connection remembers; a segment that would make one more is
/// dropped (the sender will send it again).
pub(crate) const MAX_OOO: usize = 16;

/// What [`RecvBuf::insert`] did with a segment's payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Insert {
    /// How far `RCV.NXT` moved (new in-order bytes, out-of-order ranges it joined included).
    pub advanced: u32,
    /// The segment was stored beyond `RCV.NXT` (an out-of-order arrival).
    pub out_of_order: bool,
    /// In-order bytes joined at least one out-of-order range (a hole was filled).
    pub filled_hole: bool,
    /// Nothing in the segment was new.
    pub duplicate: bool,
    /// Bytes refused: past the end of the memory, or out-of-order with no range left.
    pub dropped: u32,
}

/// The ring (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RecvBuf {
    head: u32,
    len: u32,
    nxt: u32,
    ooo: [(u32, u32); MAX_OOO],
    n_ooo: u8,
    recent: [u32; 4],
    n_recent: u8,
}

impl RecvBuf {
    /// An empty buffer whose next expected sequence number is `nxt`.
    pub fn new(nxt: u32) -> RecvBuf {
        RecvBuf { nxt, ..RecvBuf::default() }
    }

    /// `RCV.NXT`.
    #[inline]
    pub fn nxt(&self) -> u32 {
        self.nxt
    }

    /// Moves `RCV.NXT` past a control flag (SYN or FIN) that occupies sequence space. Nothing
    /// follows a FIN: out-of-order data beyond it is forgotten.
    #[inline]
    pub fn advance_flag(&mut self) {
        self.nxt = self.nxt.wrapping_add(1);
        self.n_ooo = 0;
        self.n_recent = 0;
    }

    /// In-order bytes waiting to be read.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Space from `RCV.NXT` on, in memory of `cap` bytes: the most the window may offer.
    #[inline]
    pub fn space(&self, cap: usize) -> usize {
        cap.saturating_sub(self.len as usize)
    }

    /// Whether out-of-order data is held.
    #[inline]
    pub fn has_ooo(&self) -> bool {
        self.n_ooo > 0
    }

    /// The out-of-order ranges, sorted.
    pub fn ooo(&self) -> &[(u32, u32)] {
        &self.ooo[..usize::from(self.n_ooo)]
    }

    /// Stores the payload of a segment starting at sequence number `seq` (see [`Insert`]).
    /// Bytes below `RCV.NXT` are skipped; the caller has already trimmed to the window.
    pub fn insert(&mut self, mem: &mut [u8], seq: u32, data: &[u8]) -> Insert {
        let mut out = Insert::default();
        let cap = mem.len();
        let (mut seq, mut data) = (seq, data);
        if seq::lt(seq, self.nxt) {
            let skip = seq::dist(seq, self.nxt) as usize;
            if skip >= data.len() {
                out.duplicate = true;
                return out;
            }
            data = &data[skip..];
            seq = self.nxt;
        }
        let off = seq::dist(self.nxt, seq) as usize;
        let room = self.space(cap);
        if off >= room {
            out.dropped = data.len() as u32;
            return out;
        }
        let n = data.len().min(room - off);
        out.dropped = (data.len() - n) as u32;
        let data = &data[..n];
        if n == 0 {
            out.duplicate = true;
            return out;
        }
        let end = seq.wrapping_add(n as u32);
        if off > 0 && self.covered(seq, end) {
            out.duplicate = true;
            out.out_of_order = true;
            self.note_recent(seq);
            return out;
        }
        if off > 0 && !self.can_merge(seq, end) {
            out.dropped += n as u32;
            return out;
        }
        let at = (self.head as usize + self.len as usize + off) % cap;
        let first = n.min(cap - at);
        mem[at..at + first].copy_from_slice(&data[..first]);
        mem[..n - first].copy_from_slice(&data[first..]);
        if off == 0 {
            let mut new_nxt = end;
            while self.n_ooo > 0 && seq::le(self.ooo[0].0, new_nxt) {
                new_nxt = seq::max(new_nxt, self.ooo[0].1);
                self.remove(0);
                out.filled_hole = true;
            }
            out.advanced = new_nxt.wrapping_sub(self.nxt);
            self.len += out.advanced;
            self.nxt = new_nxt;
        } else {
            self.merge(seq, end);
            out.out_of_order = true;
            self.note_recent(seq);
        }
        out
    }

    fn covered(&self, s: u32, e: u32) -> bool {
        self.ooo().iter().any(|&(a, b)| seq::le(a, s) && seq::le(e, b))
    }

    /// Whether `[s, e)` can be recorded: it touches an existing range or a slot is free.
    fn can_merge(&self, s: u32, e: u32) -> bool {
        usize::from(self.n_ooo) < MAX_OOO
            || self.ooo().iter().any(|&(a, b)| seq::le(a, e) && seq::le(s, b))
    }

    fn remove(&mut self, i: usize) {
        let n = usize::from(self.n_ooo);
        if i < n {
            self.ooo.copy_within(i + 1..n, i);
            self.n_ooo -= 1;
        }
    }

    /// Adds `[s, e)` to the sorted range list, joining every range it touches.
    fn merge(&mut self, mut s: u32, mut e: u32) {
        let n = usize::from(self.n_ooo);
        // First range that ends at or after s (it may touch), and first that starts after e.
        let lo = self.ooo[..n].iter().position(|&(_, b)| seq::ge(b, s)).unwrap_or(n);
        let hi = self.ooo[..n].iter().position(|&(a, _)| seq::gt(a, e)).unwrap_or(n);
        if lo < hi {
            s = seq::min(s, self.ooo[lo].0);
            e = seq::max(e, self.ooo[hi - 1].1);
            self.ooo[lo] = (s, e);
            self.ooo.copy_within(hi..n, lo + 1);
            self.n_ooo -= (hi - lo - 1) as u8;
        } else if n < MAX_OOO {
            self.ooo.copy_within(lo..n, lo + 1);
            self.ooo[lo] = (s, e);
            self.n_ooo += 1;
        }
    }

    fn note_recent(&mut self, s: u32) {
        let n = usize::from(self.n_recent).min(self.recent.len() - 1);
        self.recent.copy_within(0..n, 1);
        self.recent[0] = s;
        self.n_recent = (n + 1) as u8;
    }

    /// Up to `max` SACK blocks: the range holding the most recent out-of-order arrival first,
    /// then other recently reported ones, then the highest remaining (RFC 2018 §4).
    pub fn sack_blocks(&self, max: usize) -> SackBlocks {
        let mut out = SackBlocks::EMPTY;
        if max == 0 || self.n_ooo == 0 {
            return out;
        }
        let ranges = self.ooo();
        let mut used = 0u32; // bit i: range i reported
        for &r in &self.recent[..usize::from(self.n_recent)] {
            if out.len() >= max {
                return out;
            }
            if let Some(i) = ranges.iter().position(|&(a, b)| seq::le(a, r) && seq::lt(r, b)) {
                if used & (1 << i) == 0 {
                    used |= 1 << i;
                    out.push(ranges[i]);
                }
            }
        }
        for i in (0..ranges.len()).rev() {
            if out.len() >= max {
                break;
            }
            if used & (1 << i) == 0 {
                used |= 1 << i;
                out.push(ranges[i]);
            }
        }
        out
    }

    /// Copies up to `out.len()` in-order bytes out and frees them; returns how many.
    pub fn read(&mut self, mem: &[u8], out: &mut [u8]) -> usize {
        let mut done = 0;
        while done < out.len() {
            let n = self.read_with(mem, |d| {
                let n = d.len().min(out.len() - done);
                out[done..done + n].copy_from_slice(&d[..n]);
                n
            });
            if n == 0 {
                break;
            }
            done += n;
        }
        done
    }

    /// Lends the contiguous in-order bytes at the head (all of them unless the ring wraps) to
    /// `f`, which returns how many it consumed (clamped); frees those and returns the count.
    pub fn read_with(&mut self, mem: &[u8], f: impl FnOnce(&[u8]) -> usize) -> usize {
        let cap = mem.len();
        if self.len == 0 || cap == 0 {
            return 0;
        }
        let h = self.head as usize;
        let n = (self.len as usize).min(cap - h);
        let took = f(&mem[h..h + n]).min(n);
        self.consume(cap, took);
        took
    }

    /// The contiguous in-order bytes at the head, without consuming them.
    #[cfg(test)]
    pub fn peek<'m>(&self, mem: &'m [u8]) -> &'m [u8] {
        let cap = mem.len();
        if self.len == 0 || cap == 0 {
            return &[];
        }
        let h = self.head as usize;
        &mem[h..h + (self.len as usize).min(cap - h)]
    }

    /// Frees the first `n` in-order bytes.
    pub fn consume(&mut self, cap: usize, n: usize) {
        if cap == 0 {
            return;
        }
        let n = n.min(self.len as usize);
        self.head = ((self.head as usize + n) % cap) as u32;
        self.len -= n as u32;
        if self.len == 0 && self.n_ooo == 0 {
            // Nothing stored: start again at the front, so the next read is one slice.
            self.head = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_out_of_order_and_holes() {
        let mut mem = [0u8; 16];
        let mut b = RecvBuf::new(100);
        let r = b.insert(&mut mem, 104, b"efgh");
        assert!(r.out_of_order && r.advanced == 0);
        assert_eq!(b.ooo(), &[(104, 108)]);
        let r = b.insert(&mut mem, 110, b"kl");
        assert!(r.out_of_order);
        assert_eq!(b.sack_blocks(3).as_slice(), &[(110, 112), (104, 108)]);
        let r = b.insert(&mut mem, 100, b"abcd");
        assert_eq!((r.advanced, r.filled_hole), (8, true));
        assert_eq!(b.nxt(), 108);
        assert_eq!(b.ooo(), &[(110, 112)]);
        let r = b.insert(&mut mem, 108, b"ij");
        assert_eq!(r.advanced, 4);
        let mut out = [0u8; 20];
        assert_eq!(b.read(&mem, &mut out), 12);
        assert_eq!(&out[..12], b"abcdefghijkl");
        // Duplicates and old data.
        assert!(b.insert(&mut mem, 100, b"abcd").duplicate);
        let r = b.insert(&mut mem, 110, b"klmn");
        assert_eq!(r.advanced, 2);
        assert_eq!(b.read(&mem, &mut out), 2);
        assert_eq!(&out[..2], b"mn");
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let mut mem = [0u8; 8];
        let mut b = RecvBuf::new(0);
        let r = b.insert(&mut mem, 0, b"0123456789");
        assert_eq!((r.advanced, r.dropped), (8, 2));
        assert_eq!(b.space(8), 0);
        assert_eq!(b.insert(&mut mem, 8, b"x").dropped, 1);
        assert_eq!(b.read_with(&mem, |d| d.len().min(3)), 3);
        assert_eq!(b.peek(&mem), b"34567");
        let r = b.insert(&mut mem, 9, b"9ab");
        assert!(r.out_of_order);
        assert_eq!(r.dropped, 1);
    }

    #[test]
    fn range_table_is_bounded() {
        let mut mem = vec![0u8; 1024];
        let mut b = RecvBuf::new(0);
        for i in 0..MAX_OOO as u32 {
            assert_eq!(b.insert(&mut mem, 10 + i * 10, b"xx").dropped, 0);
        }
        assert_eq!(b.insert(&mut mem, 500, b"yy").dropped, 2);
        // Touching an existing range still works.
        assert_eq!(b.insert(&mut mem, 12, b"zz").dropped, 0);
        assert_eq!(b.ooo()[0], (10, 14));
    }

    proptest! {
        /// Arbitrary (possibly overlapping, duplicated, reordered) pieces of a stream: what is
        /// read is always a prefix of the stream, each byte once, and once every byte was
        /// offered everything is read.
        #[test]
        fn delivers_a_prefix_exactly_once(
            pieces in proptest::collection::vec((0usize..200, 1usize..40), 1..80),
            start in any::<u32>(),
            reads in proptest::collection::vec(0usize..64, 1..80),
        ) {
            let stream: Vec<u8> = (0..240).map(|i| (i * 7 + 3) as u8).collect();
            let mut mem = vec![0u8; 64];
            let mut b = RecvBuf::new(start);
            let mut got = Vec::new();
            for (i, &(off, len)) in pieces.iter().enumerate() {
                let end = (off + len).min(stream.len());
                b.insert(&mut mem, start.wrapping_add(off as u32), &stream[off..end]);
                let mut out = vec![0u8; reads[i % reads.len()]];
                let n = b.read(&mem, &mut out);
                got.extend_from_slice(&out[..n]);
                prop_assert!(b.len() <= 64);
                for &(s, e) in b.ooo() {
                    prop_assert!(seq::lt(b.nxt(), s) && seq::lt(s, e));
                }
            }
            prop_assert_eq!(&got[..], &stream[..got.len()]);
            // Offer the whole stream in order: everything gets delivered.
            let mut off = got.len() + b.len();
            let mut guard = 0;
            while got.len() < stream.len() && guard < 100 {
                guard += 1;
                let end = (off + 40).min(stream.len());
                b.insert(&mut mem, start.wrapping_add(off as u32), &stream[off..end]);
                let mut out = vec![0u8; 64];
                let n = b.read(&mem, &mut out);
                got.extend_from_slice(&out[..n]);
                off = got.len() + b.len();
            }
            prop_assert_eq!(&got[..], &stream[..]);
        }
    }
}
