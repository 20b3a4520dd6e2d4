//! # A fixed-capacity FIFO of small `Copy` records
//!
//! What it is: [`FixedRing`], the bounded queue the stack uses for records it must remember
//! between calls (ARP requests to send, ICMP errors to send, ready neighbours).
//!
//! What it never does: grow. Its storage is allocated once at construction; `push` on a full
//! ring returns `false` and the caller counts the drop.
//!
//! Invariants: `len <= capacity`; `head < capacity` (or 0 for a zero-capacity ring).

/// A bounded FIFO (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct FixedRing<T> {
    items: Box<[T]>,
    head: usize,
    len: usize,
}

impl<T: Copy + Default> FixedRing<T> {
    /// An empty ring of `capacity` records.
    pub fn new(capacity: usize) -> FixedRing<T> {
        FixedRing { items: vec![T::default(); capacity].into_boxed_slice(), head: 0, len: 0 }
    }

    /// Records queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Most records the ring holds.
    pub fn capacity(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `item`; `false` if the ring is full.
    pub fn push(&mut self, item: T) -> bool {
        let cap = self.items.len();
        if self.len >= cap {
            return false;
        }
        let at = (self.head + self.len) % cap;
        self.items[at] = item;
        self.len += 1;
        true
    }

    /// The oldest record.
    pub fn front(&self) -> Option<&T> {
        if self.len == 0 {
            None
        } else {
            self.items.get(self.head)
        }
    }

    /// Removes and returns the oldest record.
    pub fn pop(&mut self) -> Option<T> {
        let item = *self.front()?;
        self.head = (self.head + 1) % self.items.len();
        self.len -= 1;
        Some(item)
    }

    /// Removes every record for which `keep` is false, keeping the order of the others.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let n = self.len;
        for _ in 0..n {
            if let Some(item) = self.pop() {
                if keep(&item) {
                    self.push(item);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fifo() {
        let mut r = FixedRing::<u32>::new(3);
        assert!(r.push(1) && r.push(2) && r.push(3));
        assert!(!r.push(4));
        assert_eq!(r.pop(), Some(1));
        assert!(r.push(5));
        r.retain(|&x| x != 3);
        assert_eq!((r.pop(), r.pop(), r.pop()), (Some(2), Some(5), None));
        assert!(r.is_empty());
        assert_eq!(r.len(), 0);
        let mut z = FixedRing::<u8>::new(0);
        assert!(!z.push(1));
        assert_eq!(z.pop(), None);
    }
}
