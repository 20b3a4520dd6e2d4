//! # The sender's SACK scoreboard (RFC 6675)
//!
//! What it is: [`Scoreboard`], the byte ranges above `SND.UNA` the peer reported as received
//! in SACK blocks (RFC 2018), and the queries RFC 6675's loss recovery is built on: how many
//! bytes of a range are not SACKed, the first hole above a point, and which holes count as
//! lost (`IsLost`, computed once for all holes as a boundary below which every unSACKed byte
//! is lost).
//!
//! What it owns: up to [`MAX_SACKED`] ranges, sorted, disjoint and non-adjacent, inside
//! `(SND.UNA, SND.MAX]`. When a report would need more, the highest range is forgotten: that
//! only makes the sender retransmit something the peer already has.
//!
//! What it never does: trust a block: blocks outside `(SND.UNA, SND.MAX]` (a D-SACK, RFC 2883,
//! or a lie) are ignored; allocate; or panic.
//!
//! Invariants: every range `[s, e)` has `SND.UNA < s < e <= SND.MAX` at the time it was
//! recorded, and [`Scoreboard::advance`] drops what falls below a new `SND.UNA`.
//!
//! References: RFC 2018 (the option), RFC 6675 §4 (`IsLost`, `SetPipe`, `NextSeg`), RFC 2883.

use super::seq;

/// Most SACKed ranges remembered.
pub(crate) const MAX_SACKED: usize = 16;

/// RFC 6675's `DupThresh`.
pub(crate) const DUP_THRESH: u32 = 3;

/// The scoreboard (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Scoreboard {
    ranges: [(u32, u32); MAX_SACKED],
    n: u8,
}

impl Scoreboard {
    /// Forgets everything (after a retransmission timeout, RFC 2018 §8).
    pub fn clear(&mut self) {
        self.n = 0;
    }

    /// Whether nothing is SACKed.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The ranges, sorted.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges[..usize::from(self.n)]
    }

    /// Records SACK blocks of an ACK for the window `(una, max]`; returns whether anything new
    /// was learnt.
    pub fn update(&mut self, una: u32, max: u32, blocks: &[(u32, u32)]) -> bool {
        let mut news = false;
        for &(l, r) in blocks {
            // A block must lie inside (una, max]: below is a D-SACK (RFC 2883), above a lie.
            if !seq::lt(l, r) || seq::lt(l, una) || seq::gt(r, max) {
                continue;
            }
            if self.covers(l, r) {
                continue;
            }
            self.insert(l, r);
            news = true;
        }
        news
    }

    fn covers(&self, l: u32, r: u32) -> bool {
        self.ranges().iter().any(|&(a, b)| seq::le(a, l) && seq::le(r, b))
    }

    fn insert(&mut self, mut s: u32, mut e: u32) {
        let n = usize::from(self.n);
        let lo = self.ranges[..n].iter().position(|&(_, b)| seq::ge(b, s)).unwrap_or(n);
        let hi = self.ranges[..n].iter().position(|&(a, _)| seq::gt(a, e)).unwrap_or(n);
        if lo < hi {
            s = seq::min(s, self.ranges[lo].0);
            e = seq::max(e, self.ranges[hi - 1].1);
            self.ranges[lo] = (s, e);
            self.ranges.copy_within(hi..n, lo + 1);
            self.n -= (hi - lo - 1) as u8;
            return;
        }
        if n == MAX_SACKED {
            if lo == n {
                // The new range would be the highest: forget it instead.
                return;
            }
            self.n -= 1;
        }
        let n = usize::from(self.n);
        self.ranges.copy_within(lo..n, lo + 1);
        self.ranges[lo] = (s, e);
        self.n += 1;
    }

    /// `SND.UNA` moved to `una`: drops and trims ranges below it.
    pub fn advance(&mut self, una: u32) {
        let n = usize::from(self.n);
        let gone = self.ranges[..n].iter().take_while(|&&(_, e)| seq::le(e, una)).count();
        if gone > 0 {
            self.ranges.copy_within(gone..n, 0);
            self.n -= gone as u8;
        }
        if self.n > 0 && seq::lt(self.ranges[0].0, una) {
            self.ranges[0].0 = una;
        }
    }

    /// Bytes SACKed in total.
    pub fn sacked_bytes(&self) -> u32 {
        self.ranges().iter().map(|&(a, b)| b.wrapping_sub(a)).sum()
    }

    /// The end of the highest SACKed range.
    pub fn highest(&self) -> Option<u32> {
        self.ranges().last().map(|r| r.1)
    }

    /// Bytes of `[a, b)` not SACKed.
    pub fn unsacked(&self, a: u32, b: u32) -> u32 {
        let total = seq::dist(a, b);
        let covered: u32 =
            self.ranges().iter().map(|&(s, e)| seq::dist(seq::max(s, a), seq::min(e, b))).sum();
        total.saturating_sub(covered)
    }

    /// The first hole at or above `from` and below `limit`: `[start, end)` with `end` at the
    /// next SACKed range or `limit`.
    pub fn next_hole(&self, from: u32, limit: u32) -> Option<(u32, u32)> {
        let mut at = from;
        for &(s, e) in self.ranges() {
            if !seq::lt(at, limit) {
                return None;
            }
            if seq::lt(at, s) {
                return Some((at, seq::min(s, limit)));
            }
            at = seq::max(at, e);
        }
        seq::lt(at, limit).then_some((at, limit))
    }

    /// RFC 6675 `IsLost` for every hole at once: the boundary below which each unSACKed byte
    /// has at least `DupThresh` SACKed ranges or more than `(DupThresh − 1) × mss` SACKed bytes
    /// above it. Returns `una` (nothing lost) if no byte qualifies.
    pub fn lost_boundary(&self, una: u32, mss: u32) -> u32 {
        let (mut count, mut bytes) = (0u32, 0u32);
        for &(s, e) in self.ranges().iter().rev() {
            count += 1;
            bytes = bytes.saturating_add(e.wrapping_sub(s));
            if count >= DUP_THRESH || bytes > (DUP_THRESH - 1) * mss {
                return seq::max(s, una);
            }
        }
        una
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_merges_and_advances() {
        let mut sb = Scoreboard::default();
        assert!(sb.update(100, 1000, &[(300, 400), (500, 600)]));
        assert!(!sb.update(100, 1000, &[(300, 400)]));
        // Outside the window: ignored (D-SACK below una, beyond max).
        assert!(!sb.update(100, 1000, &[(50, 90), (900, 1100), (400, 300)]));
        assert!(sb.update(100, 1000, &[(400, 500)]));
        assert_eq!(sb.ranges(), &[(300, 600)]);
        assert_eq!(sb.sacked_bytes(), 300);
        assert_eq!(sb.unsacked(100, 700), 300);
        assert_eq!(sb.next_hole(100, 1000), Some((100, 300)));
        assert_eq!(sb.next_hole(300, 1000), Some((600, 1000)));
        assert_eq!(sb.next_hole(600, 600), None);
        assert_eq!(sb.highest(), Some(600));
        sb.advance(350);
        assert_eq!(sb.ranges(), &[(350, 600)]);
        sb.advance(600);
        assert!(sb.is_empty());
    }

    #[test]
    fn is_lost_boundary() {
        let mss = 100;
        let mut sb = Scoreboard::default();
        sb.update(0, 10_000, &[(100, 200)]);
        assert_eq!(sb.lost_boundary(0, mss), 0);
        sb.update(0, 10_000, &[(300, 400)]);
        assert_eq!(sb.lost_boundary(0, mss), 0);
        // Three ranges above the first hole: it is lost; the others are not.
        sb.update(0, 10_000, &[(500, 600)]);
        assert_eq!(sb.lost_boundary(0, mss), 100);
        // More than 2 × MSS SACKed above a hole also makes it lost.
        let mut sb = Scoreboard::default();
        sb.update(0, 10_000, &[(1000, 1201)]);
        assert_eq!(sb.lost_boundary(0, mss), 1000);
        sb.clear();
        assert_eq!(sb.lost_boundary(7, mss), 7);
    }

    #[test]
    fn bounded_forgets_the_highest() {
        let mut sb = Scoreboard::default();
        for i in 0..MAX_SACKED as u32 + 4 {
            sb.update(0, 100_000, &[(i * 100 + 50, i * 100 + 60)]);
        }
        assert_eq!(sb.ranges().len(), MAX_SACKED);
        sb.update(0, 100_000, &[(10, 20)]);
        assert_eq!(sb.ranges()[0], (10, 20));
        assert_eq!(sb.ranges().len(), MAX_SACKED);
    }

    proptest! {
        #[test]
        fn ranges_stay_sorted_disjoint_and_inside(
            una in any::<u32>(),
            blocks in proptest::collection::vec((0u32..5000, 0u32..600), 0..40),
            adv in 0u32..3000,
        ) {
            let max = una.wrapping_add(4000);
            let mut sb = Scoreboard::default();
            for (l, len) in blocks {
                let l = una.wrapping_add(l).wrapping_sub(200).wrapping_add(len / 3);
                sb.update(una, max, &[(l, l.wrapping_add(len))]);
                let r = sb.ranges();
                for w in r.windows(2) {
                    prop_assert!(seq::lt(w[0].1, w[1].0));
                }
                for &(s, e) in r {
                    prop_assert!(seq::lt(una, e) && seq::le(una, s) && seq::lt(s, e) && seq::le(e, max));
                }
            }
            let una2 = una.wrapping_add(adv);
            sb.advance(una2);
            for &(s, _) in sb.ranges() {
                prop_assert!(seq::le(una2, s));
            }
            prop_assert!(sb.unsacked(una2, max) + sb.sacked_bytes() == seq::dist(una2, max));
        }
    }
}
