//! # Sequence-number arithmetic
//!
//! What it is: comparisons and distances on 32-bit TCP sequence numbers modulo 2^32 (RFC 9293
//! §3.4, the serial-number arithmetic of RFC 1982): `a < b` iff `b - a`, taken as a signed
//! 32-bit value, is positive. Every place in [`crate::tcp`] that orders sequence numbers,
//! acknowledgment numbers or timestamps goes through these functions.
//!
//! What it never does: panic or overflow (all arithmetic wraps).
//!
//! Invariants: the order is only meaningful for numbers less than 2^31 apart, which TCP's
//! window limits (RFC 7323 §2.3: at most 2^30 bytes of window) guarantee for live state.

/// `a < b` in sequence space.
#[inline]
pub(crate) fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a <= b` in sequence space.
#[inline]
pub(crate) fn le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// `a > b` in sequence space.
#[inline]
pub(crate) fn gt(a: u32, b: u32) -> bool {
    lt(b, a)
}

/// `a >= b` in sequence space.
#[inline]
pub(crate) fn ge(a: u32, b: u32) -> bool {
    le(b, a)
}

/// The later of two sequence numbers.
#[inline]
pub(crate) fn max(a: u32, b: u32) -> u32 {
    if lt(a, b) {
        b
    } else {
        a
    }
}

/// The earlier of two sequence numbers.
#[inline]
pub(crate) fn min(a: u32, b: u32) -> u32 {
    if lt(a, b) {
        a
    } else {
        b
    }
}

/// `b - a` as a byte count when `a <= b`, else 0.
#[inline]
pub(crate) fn dist(a: u32, b: u32) -> u32 {
    if le(a, b) {
        b.wrapping_sub(a)
    } else {
        0
    }
}

/// Whether `x` lies in the half-open range `[lo, hi)`.
#[inline]
pub(crate) fn in_range(x: u32, lo: u32, hi: u32) -> bool {
    x.wrapping_sub(lo) < hi.wrapping_sub(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_around() {
        assert!(lt(0xffff_fff0, 0x10));
        assert!(gt(0x10, 0xffff_fff0));
        assert!(le(5, 5) && ge(5, 5) && !lt(5, 5));
        assert_eq!(dist(0xffff_fff0, 0x10), 0x20);
        assert_eq!(dist(0x10, 0xffff_fff0), 0);
        assert_eq!(max(0xffff_fff0, 0x10), 0x10);
        assert_eq!(min(0xffff_fff0, 0x10), 0xffff_fff0);
        assert!(in_range(0xffff_ffff, 0xffff_fff0, 0x10));
        assert!(in_range(0xffff_fff0, 0xffff_fff0, 0x10));
        assert!(!in_range(0x10, 0xffff_fff0, 0x10));
        assert!(!in_range(7, 7, 7));
    }
}
