//! # The connection timer queue
//!
//! What it is: [`TimerQueue`], an indexed binary min-heap holding each connection slot at most
//! once, keyed by the earliest instant at which that connection may have timer work
//! (retransmission, persist, delayed ACK, keep-alive, FIN-WAIT-2). `poll_timeout` of the whole
//! stack reads its top in O(1); arming is O(log n) and only when a deadline moves *earlier*.
//!
//! What it owns: the heap and the position of every slot in it, both sized once for the
//! connection table.
//!
//! Laziness (Linux's trick for its retransmission timer): pushing a deadline *later* (an ACK
//! restarting the retransmission timer, the common case) does not touch the heap. When the
//! stale, earlier key comes up, the connection reports its real next deadline and is re-keyed.
//! So a key may be early, never late: a wake-up can find nothing to do, a deadline is never
//! missed.
//!
//! What it never does: allocate after construction, or panic (ids at or above the capacity are
//! ignored).
//!
//! Invariants: the heap property on keys; `pos[id]` is the index of `id` in the heap or
//! [`NONE`]; each id appears at most once.

/// Position of an id that is not in the heap.
const NONE: u32 = u32::MAX;

/// The queue (see the module documentation).
#[derive(Debug)]
pub(crate) struct TimerQueue {
    heap: Vec<(u64, u32)>,
    pos: Box<[u32]>,
}

impl TimerQueue {
    /// A queue for ids `0..capacity`.
    pub fn new(capacity: usize) -> TimerQueue {
        TimerQueue { heap: Vec::with_capacity(capacity), pos: vec![NONE; capacity].into() }
    }

    /// Entries queued.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// The earliest key and its id.
    pub fn peek(&self) -> Option<(u64, u32)> {
        self.heap.first().copied()
    }

    /// The key of `id`, if queued.
    #[cfg(test)]
    pub fn key(&self, id: u32) -> Option<u64> {
        let p = *self.pos.get(id as usize)?;
        (p != NONE).then(|| self.heap[p as usize].0)
    }

    /// Makes sure `id` wakes up no later than `at`: inserts it, or moves its key earlier; a
    /// later `at` leaves an existing key alone (see the module documentation).
    pub fn arm(&mut self, id: u32, at: u64) {
        let Some(&p) = self.pos.get(id as usize) else { return };
        if p == NONE {
            self.heap.push((at, id));
            let i = self.heap.len() - 1;
            self.pos[id as usize] = i as u32;
            self.sift_up(i);
        } else if at < self.heap[p as usize].0 {
            self.heap[p as usize].0 = at;
            self.sift_up(p as usize);
        }
    }

    /// Sets the key of `id` to exactly `at` (inserting it if needed).
    #[cfg(test)]
    pub fn set(&mut self, id: u32, at: u64) {
        self.remove(id);
        self.arm(id, at);
    }

    /// Removes `id` if queued.
    pub fn remove(&mut self, id: u32) {
        let Some(&p) = self.pos.get(id as usize) else { return };
        if p == NONE {
            return;
        }
        let p = p as usize;
        let last = self.heap.len() - 1;
        self.heap.swap(p, last);
        self.heap.pop();
        self.pos[id as usize] = NONE;
        if p < self.heap.len() {
            let moved = self.heap[p].1 as usize;
            self.pos[moved] = p as u32;
            self.sift_down(p);
            self.sift_up(p);
        }
    }

    /// Removes and returns the earliest id if its key is at or before `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<u32> {
        let (at, id) = self.peek()?;
        if at > now {
            return None;
        }
        self.remove(id);
        Some(id)
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[parent].0 <= self.heap[i].0 {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < n && self.heap[l].0 < self.heap[m].0 {
                m = l;
            }
            if r < n && self.heap[r].0 < self.heap[m].0 {
                m = r;
            }
            if m == i {
                break;
            }
            self.swap(i, m);
            i = m;
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].1 as usize] = a as u32;
        self.pos[self.heap[b].1 as usize] = b as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lazy_arming_and_popping() {
        let mut q = TimerQueue::new(4);
        q.arm(1, 50);
        q.arm(2, 30);
        q.arm(1, 80); // later: ignored
        assert_eq!(q.key(1), Some(50));
        q.arm(1, 10); // earlier: moved
        assert_eq!(q.peek(), Some((10, 1)));
        q.set(1, 90);
        assert_eq!(q.peek(), Some((30, 2)));
        assert_eq!(q.pop_due(29), None);
        assert_eq!(q.pop_due(30), Some(2));
        assert_eq!(q.len(), 1);
        q.arm(9, 1); // out of range: ignored
        q.remove(3);
        assert_eq!(q.pop_due(100), Some(1));
        assert_eq!(q.peek(), None);
    }

    proptest! {
        #[test]
        fn pops_in_key_order(ops in proptest::collection::vec((0u32..32, 0u64..1000, 0u8..3), 1..200)) {
            let mut q = TimerQueue::new(32);
            let mut model = std::collections::HashMap::new();
            for (id, at, op) in ops {
                match op {
                    0 => { q.arm(id, at); let e = model.entry(id).or_insert(at); *e = (*e).min(at); }
                    1 => { q.set(id, at); model.insert(id, at); }
                    _ => { q.remove(id); model.remove(&id); }
                }
                prop_assert_eq!(q.len(), model.len());
            }
            let mut last = 0;
            while let Some((at, id)) = q.peek() {
                prop_assert_eq!(q.pop_due(u64::MAX), Some(id));
                prop_assert_eq!(model.remove(&id), Some(at));
                prop_assert!(at >= last);
                last = at;
            }
            prop_assert!(model.is_empty());
        }
    }
}
