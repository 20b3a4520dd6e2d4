//! # Single-writer cells and fixed-bucket histograms
//!
//! What it is: the fast-path half of the metrics (DESIGN.md §6). A worker owns its cells and is
//! their only writer; it updates them with a relaxed load and a relaxed store (no locked
//! read-modify-write: on x86-64 both are plain `mov`s), once per batch or once per
//! publication. The control thread reads them at scrape time with relaxed loads and sums what
//! it needs. A reader may see a value a few batches old, never a torn or decreasing one (each
//! cell only grows, or is a gauge stored whole).
//!
//! What it owns: nothing but atomics. What it never does: allocate after construction, lock, or
//! read-modify-write an atomic (two writers on one cell would lose counts: the type system does
//! not stop that, the ownership does: every cell block belongs to one worker, see
//! [`super::WorkerMetrics`]).
//!
//! [`CachePadded`] keeps one worker's hot cells off the lines of another's (128 bytes: the
//! adjacent-line prefetcher of x86 pulls pairs of 64-byte lines).
//!
//! Histograms ([`Histogram`]) have fixed powers-of-two buckets: bucket `i` holds values
//! `<= 2^(shift + i)`, the last one everything above (`+Inf`). Observing is one
//! `leading_zeros`, two cell updates (the bucket and the sum); the count is the sum of the
//! buckets, computed at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

/// Aligns its content to 128 bytes (two cache lines), so two workers' blocks never share one.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CachePadded<T>(pub T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Adds `v` to a cell with one writer: relaxed load, relaxed store.
#[inline(always)]
pub fn add(cell: &AtomicU64, v: u64) {
    cell.store(cell.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
}

/// A fixed array of single-writer cells.
#[derive(Debug)]
pub struct Cells<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Cells<N> {
    fn default() -> Self {
        Cells(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl<const N: usize> Cells<N> {
    /// Stores a whole snapshot (the writer's own plain counters), cell by cell.
    #[inline]
    pub fn store(&self, values: &[u64; N]) {
        for (c, &v) in self.0.iter().zip(values) {
            c.store(v, Ordering::Relaxed);
        }
    }

    /// Sets cell `i`.
    #[inline]
    pub fn set(&self, i: usize, v: u64) {
        self.0[i].store(v, Ordering::Relaxed);
    }

    /// Adds to cell `i` (single writer).
    #[inline]
    pub fn add(&self, i: usize, v: u64) {
        add(&self.0[i], v);
    }

    /// Cell `i` now.
    #[inline]
    pub fn get(&self, i: usize) -> u64 {
        self.0[i].load(Ordering::Relaxed)
    }

    /// Every cell now.
    pub fn snapshot(&self) -> [u64; N] {
        std::array::from_fn(|i| self.get(i))
    }
}

/// Most buckets of a [`Histogram`], `+Inf` included.
pub const MAX_BUCKETS: usize = 16;

/// Bucket layout of a [`Histogram`]: bucket `i < finite` holds values `<= 2^(shift + i)`,
/// bucket `finite` the rest. Exposed upper bounds are `2^(shift + i) / divisor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Buckets {
    /// Log2 of the first bound.
    pub shift: u32,
    /// Finite buckets (at most [`MAX_BUCKETS`] − 1).
    pub finite: usize,
    /// Divisor from the observed unit to the exposed one (1e9 for nanoseconds → seconds; a
    /// division keeps the exposed bounds exact decimals, a multiplication by 1e-9 would not).
    pub divisor: f64,
}

/// Frames per batch: 1, 2, 4, … 256, +Inf.
pub const BATCH_FRAMES: Buckets = Buckets { shift: 0, finite: 9, divisor: 1.0 };
/// Batch processing time, observed in nanoseconds, exposed in seconds: 1.024 µs … 1.05 ms,
/// +Inf.
pub const BATCH_NANOS: Buckets = Buckets { shift: 10, finite: 11, divisor: 1e9 };

impl Buckets {
    /// The bucket index of `v`.
    #[inline(always)]
    pub fn index(&self, v: u64) -> usize {
        if v <= 1 << self.shift {
            return 0;
        }
        // ceil(log2(v)) for v >= 2.
        let log = 64 - (v - 1).leading_zeros();
        ((log - self.shift) as usize).min(self.finite)
    }

    /// Upper bound of bucket `i < finite`, in the exposed unit.
    pub fn bound(&self, i: usize) -> f64 {
        (1u64 << (self.shift as usize + i)) as f64 / self.divisor
    }
}

/// A fixed-bucket histogram with one writer (see the module documentation).
#[derive(Debug)]
pub struct Histogram {
    layout: Buckets,
    buckets: [AtomicU64; MAX_BUCKETS],
    sum: AtomicU64,
}

impl Histogram {
    /// An empty histogram of `layout`.
    pub fn new(layout: Buckets) -> Histogram {
        assert!(layout.finite < MAX_BUCKETS, "histogram: too many buckets");
        Histogram {
            layout,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts one observation of `v` (single writer).
    #[inline(always)]
    pub fn observe(&self, v: u64) {
        add(&self.buckets[self.layout.index(v)], 1);
        add(&self.sum, v);
    }

    /// The layout.
    pub fn layout(&self) -> Buckets {
        self.layout
    }

    /// Non-cumulative bucket counts (`finite + 1` of them) and the sum, now.
    pub fn snapshot(&self) -> (Vec<u64>, u64) {
        let b =
            self.buckets[..=self.layout.finite].iter().map(|c| c.load(Ordering::Relaxed)).collect();
        (b, self.sum.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_smallest_bucket_that_holds_them() {
        let b = BATCH_FRAMES;
        let idx: Vec<usize> =
            [1, 2, 3, 4, 5, 8, 9, 64, 65, 256, 257, 10_000].iter().map(|&v| b.index(v)).collect();
        assert_eq!(idx, [0, 1, 2, 2, 3, 3, 4, 6, 7, 8, 9, 9]);
        assert_eq!(b.index(0), 0);
        let t = BATCH_NANOS;
        assert_eq!((t.index(500), t.index(1024), t.index(1025), t.index(1 << 20)), (0, 0, 1, 10));
        assert_eq!(t.index(u64::MAX), 11);
        assert!((t.bound(0) - 1.024e-6).abs() < 1e-15);
        assert_eq!(b.bound(8), 256.0);
    }

    #[test]
    fn a_histogram_counts_and_sums() {
        let h = Histogram::new(BATCH_FRAMES);
        for v in [1, 1, 3, 64, 300] {
            h.observe(v);
        }
        let (b, sum) = h.snapshot();
        assert_eq!(b.len(), 10);
        assert_eq!((b[0], b[2], b[6], b[9]), (2, 1, 1, 1));
        assert_eq!(b.iter().sum::<u64>(), 5);
        assert_eq!(sum, 369);
    }

    #[test]
    fn cells_store_and_add() {
        let c: Cells<3> = Cells::default();
        c.store(&[1, 2, 3]);
        c.add(1, 5);
        assert_eq!(c.snapshot(), [1, 7, 3]);
        assert_eq!(std::mem::align_of::<CachePadded<Cells<3>>>(), 128);
    }
}
