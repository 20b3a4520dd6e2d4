//! # Batched virtio-style queues: descriptors and bursts
//!
//! What it is: the element that travels between a NIC queue and the stack ([`Desc`]: where the
//! frame sits in the port's memory, its length, and its virtio-net-style offload header
//! [`NetHdr`]) and the fixed-capacity batch they travel in ([`Burst`]).
//!
//! Like a virtqueue, descriptors move in bursts and the device is notified once per burst; like
//! `virtio_net_hdr`, the header says whether the checksum is verified or still to be completed
//! and whether the frame is a super-segment (see [`libos::wire::NetHdr`] for the conventions).
//!
//! A [`Burst`] never allocates: it is an array of [`MAX_BURST`] descriptors and a length.

use libos::wire::NetHdr;

/// Largest burst any port accepts.
pub const MAX_BURST: usize = 256;
/// Burst size used unless configured otherwise.
pub const DEFAULT_BURST: usize = 64;

/// One frame in flight between a port and its user: where it is, how long, and its offload
/// metadata (the virtio-net-style header).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    /// Offset of the frame's first byte in the port's frame memory (the UMEM for AF_XDP).
    pub addr: u64,
    /// Frame length in bytes.
    pub len: u32,
    /// Offload metadata: checksum state, segmentation.
    pub hdr: NetHdr,
}

/// A fixed-capacity batch of descriptors; never allocates.
#[derive(Clone)]
pub struct Burst {
    len: usize,
    descs: [Desc; MAX_BURST],
}

impl core::fmt::Debug for Burst {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

impl Burst {
    /// An empty burst.
    pub const fn new() -> Self {
        Burst { len: 0, descs: [Desc { addr: 0, len: 0, hdr: NetHdr::NONE }; MAX_BURST] }
    }

    /// Descriptors in the burst.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the burst holds no descriptor.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many more descriptors fit.
    pub fn spare(&self) -> usize {
        MAX_BURST - self.len
    }

    /// Appends `d`; returns `false` (and drops nothing) when the burst is full.
    #[inline]
    pub fn push(&mut self, d: Desc) -> bool {
        if self.len == MAX_BURST {
            return false;
        }
        self.descs[self.len] = d;
        self.len += 1;
        true
    }

    /// Removes every descriptor.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The descriptors, in order.
    #[inline]
    pub fn as_slice(&self) -> &[Desc] {
        &self.descs[..self.len]
    }

    /// The descriptors, in order, for rewriting in place.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [Desc] {
        &mut self.descs[..self.len]
    }

    /// Iterates over the descriptors.
    pub fn iter(&self) -> core::slice::Iter<'_, Desc> {
        self.as_slice().iter()
    }

    /// Removes the first `n` descriptors (all of them if `n >= len`), keeping the order of the
    /// rest. Used after a partial `tx_burst`.
    #[inline]
    pub fn consume_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.descs.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Keeps only the descriptors for which `keep` returns true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&Desc) -> bool) {
        let mut w = 0;
        for r in 0..self.len {
            if keep(&self.descs[r]) {
                self.descs[w] = self.descs[r];
                w += 1;
            }
        }
        self.len = w;
    }
}

impl<'a> IntoIterator for &'a Burst {
    type Item = &'a Desc;
    type IntoIter = core::slice::Iter<'a, Desc>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(addr: u64) -> Desc {
        Desc { addr, len: 60, hdr: NetHdr::NONE }
    }

    #[test]
    fn burst_push_until_full_then_refuses() {
        let mut b = Burst::new();
        for i in 0..MAX_BURST {
            assert!(b.push(d(i as u64)));
        }
        assert!(!b.push(d(999)));
        assert_eq!(b.len(), MAX_BURST);
        assert_eq!(b.spare(), 0);
    }

    #[test]
    fn consume_front_keeps_order_of_the_rest() {
        let mut b = Burst::new();
        for i in 0..5 {
            b.push(d(i));
        }
        b.consume_front(2);
        let addrs: Vec<u64> = b.iter().map(|d| d.addr).collect();
        assert_eq!(addrs, [2, 3, 4]);
        b.consume_front(10);
        assert!(b.is_empty());
    }

    #[test]
    fn retain_filters_in_order() {
        let mut b = Burst::new();
        for i in 0..6 {
            b.push(d(i));
        }
        b.retain(|d| d.addr % 2 == 0);
        let addrs: Vec<u64> = b.iter().map(|d| d.addr).collect();
        assert_eq!(addrs, [0, 2, 4]);
    }
}
